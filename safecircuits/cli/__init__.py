"""The ``safecircuits`` command line (typer).

Global options (before the command) set the defaults of every command that loads a model:
``safecircuits --device cuda --dtype bfloat16 --threads 8 --deterministic discover ...``; the
model-loading commands also take ``--device`` / ``--dtype`` themselves. Each command lives in the
module of its area (``models``, ``circuits``, ``features``, ``subspaces``, ``finetune``, ``bench``,
``demo``); their heavy imports happen inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import typer

from safecircuits.cli._common import console, fail

app = typer.Typer(help="safecircuits: safety circuits, SAE features, safety subspaces and safe fine-tuning on hooked transformers.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)


@app.callback()
def _global(
    device: str | None = typer.Option(None, "--device", help="default device of every command: auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps"),
    dtype: str | None = typer.Option(None, "--dtype", help="default dtype: float32, bfloat16, float16 (default: per model, see docs/devices.md)"),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: 1 for tiny models, every free core for real ones)"),
    deterministic: bool = typer.Option(False, "--deterministic", help="bitwise-reproducible runs: one thread, deterministic kernels (slower)"),
) -> None:
    """Set the run-wide device, dtype and thread policy (safecircuits.runtime)."""
    from safecircuits import runtime
    from safecircuits.errors import SafecircuitsError

    try:
        if device is not None:
            runtime.resolve_device(device)  # checked now, so a typo fails before any work
        if dtype is not None:
            runtime.resolve_dtype(dtype)
        runtime.settings.device, runtime.settings.dtype = device, dtype
        runtime.set_threads(threads)
        runtime.set_deterministic(deterministic)
    except SafecircuitsError as e:
        fail(str(e))


def _register() -> None:
    from safecircuits.cli import bench, circuits, demo, features, finetune, models, subspaces

    for module in (models, circuits, finetune, demo):
        module.register(app)
    app.add_typer(features.app, name="sae")
    app.add_typer(subspaces.app, name="subspace")
    app.add_typer(bench.app, name="bench")


_register()


def main() -> None:  # pragma: no cover
    app()


__all__ = ["app", "console", "main"]
