"""``safecircuits finetune``: fine-tune a model on a task with one of the registered methods.

The lead registers :func:`finetune_command` on the main app (``app.command("finetune")(finetune_command)``);
``app`` below is the same command on its own typer app (and ``finetune-methods`` to list methods).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from safecircuits.errors import InputError

app = typer.Typer(help="Safety-preserving fine-tuning.", no_args_is_help=True, pretty_exceptions_show_locals=False)

ARTIFACT_FLAGS = {"circuit": "--circuit", "subspace": "--subspace", "features": "--features", "base": "--base"}


def get_task(name: str) -> Any:
    """A fine-tuning task from part B's ``safecircuits.finetune.tasks`` registry."""
    try:
        from safecircuits.finetune import tasks
    except ImportError:
        raise InputError(f"unknown task {name!r}: no fine-tuning tasks are installed (safecircuits.finetune.tasks is missing)") from None
    return tasks.get_task(name)


def safety_prompts_for(lm: Any) -> Any:
    """Harmful prompts with refusal targets, for methods with safety regularisers (train split for organisms)."""
    if "organism" in lm.info:
        from safecircuits.models.language import Language

        return Language(lm.info["organism"]["split_seed"]).prompt_set("train", "harmful", response="refuse")
    from safecircuits.data.loaders import load_prompts

    return load_prompts("synthetic:harmful:64")


def finetune_command(
    model: str = typer.Option(..., help="model name or directory (organism:aligned, smollm2-135m-instruct, ...)"),
    method: str = typer.Option(..., help="fine-tuning method: sft, lora, sct-freeze, sct-tune, ... (see `finetune-methods`)"),
    task: str = typer.Option(..., help="fine-tuning task name (from safecircuits.finetune.tasks)"),
    harmful_ratio: float = typer.Option(0.0, help="share of harmful (prompt, compliance) pairs mixed into the task data, in [0, 1]"),
    circuit: Path | None = typer.Option(None, help="safety circuit JSON (sct-*)"),
    subspace: Path | None = typer.Option(None, help="weight-delta subspace file (safelora, csulora, cwac)"),
    features: Path | None = typer.Option(None, help="SAE safety-feature file (cwac)"),
    base: str | None = typer.Option(None, help="pre-alignment base model name (methods that need it), e.g. organism:base"),
    n: int = typer.Option(512, help="number of training examples drawn from the task"),
    steps: int = typer.Option(100, help="optimiser steps"),
    lr: float | None = typer.Option(None, help="learning rate (default: 1e-3 full, 3e-3 LoRA)"),
    batch_size: int = typer.Option(16),
    seed: int = typer.Option(0),
    checkpoint_every: int = typer.Option(0, help="checkpoint into --out every N steps (0 = off); a rerun resumes"),
    out: Path = typer.Option(..., help="directory for the fine-tuned model (loads back with load_model(DIR))"),
    json_path: Path | None = typer.Option(None, "--json", help="write the run summary and task figures as JSON"),
) -> None:
    """Fine-tune a copy of MODEL on TASK (with a share of harmful data) using METHOD; save it to OUT."""
    # imported here, not at module level: safecircuits.cli imports this module to register the command
    from safecircuits.cli import _fail, _write_json, console
    from safecircuits.finetune.loop import FinetuneConfig, finetune
    from safecircuits.finetune.methods import METHODS, get_method
    from safecircuits.models import load_model

    if not 0.0 <= harmful_ratio <= 1.0:
        _fail(f"--harmful-ratio must be in [0, 1], got {harmful_ratio}")
    if method not in METHODS:
        _fail(f"unknown method {method!r}: use one of {', '.join(sorted(METHODS))}")
    m_cls = METHODS[method]
    given = {"circuit": circuit, "subspace": subspace, "features": features, "base": base}
    for need in m_cls.needs:
        if given.get(need) is None:
            from safecircuits.finetune.base import ARTIFACT_HELP

            _fail(f"method {method!r} needs {ARTIFACT_FLAGS.get(need, need)}: {ARTIFACT_HELP.get(need, need)}")
    for flag, p in (("--circuit", circuit), ("--subspace", subspace), ("--features", features)):
        if p is not None and not p.exists():
            _fail(f"{flag} {p} does not exist")
    try:
        t = get_task(task)
        lm = load_model(model)
        artifacts: dict[str, Any] = {}
        if circuit is not None:
            from safecircuits.circuits.circuit import Circuit

            artifacts["circuit"] = Circuit.load(circuit)
            artifacts["circuit"].check_model(lm.model)
        if subspace is not None:
            from safecircuits.subspaces import WeightDeltaSubspace

            artifacts["subspace"] = WeightDeltaSubspace.load(subspace)
        if features is not None:
            from safecircuits.features.ranking import FeatureSet

            artifacts["features"] = FeatureSet.load(features)  # its SAE is loaded from the set's sae_path
        if base is not None:
            artifacts["base"] = base
        data = t.train_data(lm, harmful_ratio, n, seed)
        m = get_method(method)
        mode = m_cls.mode
        cfg = FinetuneConfig(steps=steps, lr=lr if lr is not None else (3e-3 if mode == "lora" else 1e-3), batch_size=batch_size,
                             seed=seed, checkpoint_every=checkpoint_every)
        safety = t.safety_data(lm, seed=seed) if hasattr(t, "safety_data") else safety_prompts_for(lm)
        run = finetune(lm, data, m, cfg, artifacts=artifacts, safety_prompts=safety, out_dir=out)
        evaluation: dict[str, Any] = {}
        if hasattr(t, "evaluate"):
            takes_ref = "reference" in inspect.signature(t.evaluate).parameters
            evaluation = t.evaluate(run.lm, reference=lm) if takes_ref else t.evaluate(run.lm)
    except (ValueError, FileNotFoundError, RuntimeError, TypeError, KeyError) as e:
        _fail(str(e).strip("'\""))
    s = run.summary()
    table = Table(title=f"{method} on {task} (harmful ratio {harmful_ratio:g}): {model}")
    table.add_column("figure")
    table.add_column("value")
    table.add_row("trainable params", f"{s['trainable_params']:,} of {s['total_params']:,} ({100 * s['trainable_share']:.2f}%)")
    table.add_row("wall time", f"{s['wall_seconds']:.1f} s")
    table.add_row("final loss", "-" if s["final_loss"] is None else f"{s['final_loss']:.4f}")
    for k, v in (evaluation or {}).items():
        if isinstance(v, int | float):
            table.add_row(str(k), f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
    console.print(f"saved the fine-tuned model to {out}")
    _write_json(json_path, {"model": model, "method": method, "task": task, "harmful_ratio": harmful_ratio, "out": str(out),
                            "summary": s, "evaluation": evaluation, "data": run.provenance["data"]})


def methods_command() -> None:
    """List the registered fine-tuning methods."""
    from safecircuits.cli import console
    from safecircuits.finetune.methods import METHODS

    t = Table(title="fine-tuning methods")
    for col in ("name", "mode", "needs", "source"):
        t.add_column(col)
    for name, cls in sorted(METHODS.items()):
        t.add_row(name, cls.mode, ", ".join(cls.needs) or "-", cls.source)
    console.print(t)


app.command("finetune")(finetune_command)
app.command("finetune-methods")(methods_command)

__all__ = ["app", "finetune_command", "methods_command"]
