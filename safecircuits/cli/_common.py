"""What every command shares: the console, one-line errors, options, model loading, JSON output.

Every command is registered with :func:`command`, which wraps it so that any
:class:`~safecircuits.errors.SafecircuitsError` prints as one line (``error: ...``) and exits with
status 2, and a Ctrl-C says where the job stopped and how to resume it (status 130).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from safecircuits.errors import SafecircuitsError

# Not a terminal (pipes, CI, tests): a wide console, so tables and messages are not cut at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)

DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps (default: the global --device, else auto)")]
DtypeOpt = Annotated[str | None, typer.Option("--dtype", help="float32, bfloat16 or float16 (default: float32 for organisms, "
                                                              "bfloat16 for real models where the device has fast bf16)")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="write the results as JSON")]


def fail(msg: str) -> NoReturn:
    """Print ``error: msg`` (one line, markup-free) and exit with status 2."""
    console.print("[bold red]error:[/] ", end="")
    console.print(msg, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def command(app: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@command(app, "name")``: register a command whose deliberate errors print as one line."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except SafecircuitsError as e:
                fail(str(e))
            except KeyboardInterrupt:
                console.print(f"\n[bold yellow]interrupted:[/] {name or fn.__name__} stopped. Long jobs keep their finished work "
                              "and checkpoints: run the same command again to resume.")
                raise typer.Exit(code=130) from None

        app.command(name, **kwargs)(run)
        return run

    return register


def load(model: str, device: str | None = None, dtype: str | None = None, progress: bool = False):
    """``load_model`` with the command's --device / --dtype (falling back to the global options)."""
    from safecircuits import runtime
    from safecircuits.models import load_model

    return load_model(model, device=device or runtime.settings.device or "auto", dtype=dtype, progress=progress)


def write_json(path: Path | None, payload: Any) -> None:
    """Write `payload` to `path` atomically (if a path is given) and say so."""
    if path is None:
        return
    from safecircuits.io import write_json as _write

    _write(path, payload, indent=2)
    console.print(f"wrote {path}")


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def split_values(values: list[str] | None, cast: Callable[[str], Any], what: str) -> list[Any] | None:
    """Accept both ``--ratios 0 --ratios 0.1`` and ``--ratios 0,0.1``."""
    if not values:
        return None
    out = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(cast(part))
            except ValueError:
                fail(f"--{what}: {part!r} is not a valid {getattr(cast, '__name__', 'value')}")
    return out


def parse_ints(s: str | None, what: str) -> list[int] | None:
    if s is None or not s.strip():
        return None
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        fail(f"--{what} must be comma-separated integers like '1,2', got {s!r}")


VALIDATION_EXIT = 3  # the command ran and wrote its files, but the selection failed validation


def not_validated(what: str, reason: str | None, result: str = "this result") -> None:
    """Print the failed validation plainly and exit with status 3 (files are already written)."""
    console.print(f"[bold red]FAILED:[/] {what} did not pass validation: ", end="")
    console.print(reason or "(no reason recorded)", markup=False, highlight=False, soft_wrap=True)
    console.print(f"The files record validated=false; do not use {result} as a working intervention.")
    raise typer.Exit(code=VALIDATION_EXIT)
