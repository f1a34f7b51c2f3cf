"""``safecircuits demo``: the end-to-end demo on the embedded model organisms."""

from __future__ import annotations

from pathlib import Path

import typer

from safecircuits.cli._common import command, console


def demo(
    out: Path = typer.Option(Path("demo_out"), help="directory for the demo's outputs"),
    size: str = typer.Option("small", help="organism size (small, or tiny for a quick look)"),
) -> None:
    """Build the embedded organisms, evaluate them, find their circuits, SAE features and safety
    subspaces, and compare safety-preserving fine-tuning methods (writes demo_out/)."""
    from safecircuits.demo import run_demo

    run_demo(out=out, size=size, console=console)


def register(app: typer.Typer) -> None:
    command(app, "demo")(demo)
