"""``safecircuits demo``: the end-to-end demo on the embedded model organisms, or on a real chat model."""

from __future__ import annotations

from pathlib import Path

import typer

from safecircuits.cli._common import command, console


def demo(
    out: Path | None = typer.Option(None, help="directory for the demo's outputs (default: demo_out/, or demo_real_out/ with --model)"),
    size: str = typer.Option("small", help="organism size (small, or tiny for a quick look)"),
    model: str | None = typer.Option(None, help="a real chat model (e.g. smollm2-135m-instruct): run the SafeSeek chain on it instead"),
    aligned: str | None = typer.Option(None, help="with --model: an aligned model directory to start from (skips the alignment)"),
    budget: str = typer.Option("cpu", help="with --model: smoke, cpu (a few hours on 2 cores) or full (for a GPU)"),
    trigger: str = typer.Option("cf", help="with --model: the backdoor trigger to implant"),
) -> None:
    """Build the embedded organisms, evaluate them, find their circuits, SAE features and safety
    subspaces, and compare safety-preserving fine-tuning methods (writes demo_out/). With --model:
    align the chat model, implant a backdoor, find both circuits and ablate them on held-out
    prompts (writes demo_real_out/; resumable)."""
    if model is not None:
        from safecircuits.demo_real import run_real_demo

        run_real_demo(model, out=out or Path("demo_real_out"), budget=budget, aligned=aligned, trigger=trigger, console=console)
        return
    from safecircuits.demo import run_demo

    run_demo(out=out or Path("demo_out"), size=size, console=console)


def register(app: typer.Typer) -> None:
    command(app, "demo")(demo)
