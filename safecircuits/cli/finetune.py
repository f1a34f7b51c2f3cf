"""``safecircuits finetune`` (fine-tune a model on a task with one method) and ``finetune-methods``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from safecircuits.cli._common import (
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    command,
    console,
    fail,
    load,
    pct,
    write_json,
)

ARTIFACT_FLAGS = {"circuit": "--circuit", "subspace": "--subspace", "features": "--features", "base": "--base"}


def finetune_command(
    model: str = typer.Option(..., help="model name or directory (organism:aligned, smollm2-135m-instruct, ...)"),
    method: str = typer.Option(..., help="fine-tuning method: sft, lora, sct-freeze, sct-tune, ... (see `finetune-methods`)"),
    task: str = typer.Option("auto", help="fine-tuning task (reverse-steps, arithmetic); auto = the model's default task"),
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
    gradient_checkpointing: bool = typer.Option(False, help="recompute activations in the backward pass (less memory, large models)"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    json_path: JsonOpt = None,
) -> None:
    """Fine-tune a copy of MODEL on TASK (with a share of harmful data) using METHOD; save it to OUT."""
    from safecircuits.finetune.loop import FinetuneConfig, finetune
    from safecircuits.finetune.methods import METHODS, get_method
    from safecircuits.finetune.tasks import get_task

    if not 0.0 <= harmful_ratio <= 1.0:
        fail(f"--harmful-ratio must be in [0, 1], got {harmful_ratio}")
    if method not in METHODS:
        fail(f"unknown method {method!r}: use one of {', '.join(sorted(METHODS))}")
    m_cls = METHODS[method]
    given = {"circuit": circuit, "subspace": subspace, "features": features, "base": base}
    for need in m_cls.needs:
        if given.get(need) is None:
            from safecircuits.finetune.base import ARTIFACT_HELP

            fail(f"method {method!r} needs {ARTIFACT_FLAGS.get(need, need)}: {ARTIFACT_HELP.get(need, need)}")
    for flag, p in (("--circuit", circuit), ("--subspace", subspace), ("--features", features)):
        if p is not None and not p.exists():
            fail(f"{flag} {p} does not exist")
    lm = load(model, device, dtype)
    t = get_task(lm.profile.default_task if task == "auto" else task)
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
                         seed=seed, checkpoint_every=checkpoint_every, gradient_checkpointing=gradient_checkpointing)
    safety = t.safety_data(lm, seed=seed)
    run = finetune(lm, data, m, cfg, artifacts=artifacts, safety_prompts=safety, out_dir=out)
    evaluation = t.evaluate(run.lm, reference=lm)
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
    write_json(json_path, {"model": model, "method": method, "task": task, "harmful_ratio": harmful_ratio, "out": str(out),
                            "summary": s, "evaluation": evaluation, "data": run.provenance["data"]})


def methods_command() -> None:
    """List the registered fine-tuning methods."""
    from safecircuits.finetune.methods import METHODS

    t = Table(title="fine-tuning methods")
    for col in ("name", "mode", "needs", "source"):
        t.add_column(col)
    for name, cls in sorted(METHODS.items()):
        t.add_row(name, cls.mode, ", ".join(cls.needs) or "-", cls.source)
    console.print(t)


def align_command(
    model: str = typer.Option(..., help="the chat model to safety-align (e.g. smollm2-135m-instruct)"),
    out: Path = typer.Option(..., help="directory for the aligned model (loads back with load_model(DIR))"),
    steps: int | None = typer.Option(None, help="optimiser steps (unset options take AlignConfig's defaults: the configuration chosen on SmolLM2's val prompts)"),
    lr: float | None = typer.Option(None, help="learning rate"),
    batch_size: int | None = typer.Option(None),
    n_harmful: int | None = typer.Option(None, help="harmful train prompts with refusals"),
    n_harmless: int | None = typer.Option(None, help="harmless train prompts (benign, hard negatives, look-alikes, arithmetic) with the model's own answers"),
    hard_negative_share: float | None = typer.Option(None, help="share of hard negatives among the benign prompts"),
    task_share: float | None = typer.Option(None, help="share of task-style requests ('Write a script that ...') among the harmful prompts"),
    lookalike_share: float | None = typer.Option(None, help="share of benign look-alikes of those tasks among the benign prompts"),
    crossed_share: float | None = typer.Option(None, help="share of crossed requests (harmful subjects in benign phrasings) among the harmful prompts, "
                                                      "and as many benign subjects in harmful phrasings among the benign ones"),
    task_frames: str | None = typer.Option(None, help="'base' or 'extended' (more train frames for the task requests and look-alikes)"),
    task_subjects: str | None = typer.Option(None, help="'base' or 'broad' (more train subjects for the task requests and look-alikes)"),
    detailed_share: float | None = typer.Option(None, help="share of detailed requests about named agents, exploits and atrocities among the "
                                                       "harmful prompts, with as many of their benign look-alikes (at most 150) among the benign ones"),
    answer_tokens: int | None = typer.Option(None, help="the longest self-distilled harmless answer, in tokens"),
    harmless_kl: float | None = typer.Option(None, help="weight of a next-token KL to the original model on the self-distilled harmless answers (0 = CE only)"),
    seed: int = typer.Option(0),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="evaluate on held-out prompts (HarmBench, benign, hard negatives)"),
    eval_limit: int | None = typer.Option(None, help="at most N prompts per evaluation set"),
    checkpoint_every: int = typer.Option(50, help="checkpoint into --out every N steps (0 = off); a rerun resumes"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    json_path: JsonOpt = None,
) -> None:
    """Safety-align a chat model: refusals on harmful train prompts, its own answers on broad benign
    ones; then ASR and over-refusal on prompts it never saw."""
    from safecircuits.finetune.align import AlignConfig, evaluate_alignment, safety_align

    given: dict[str, Any] = {"steps": steps, "lr": lr, "batch_size": batch_size, "n_harmful": n_harmful, "n_harmless": n_harmless,
             "hard_negative_share": hard_negative_share, "task_share": task_share, "lookalike_share": lookalike_share,
             "crossed_share": crossed_share, "task_frames": task_frames, "task_subjects": task_subjects,
             "detailed_share": detailed_share, "answer_tokens": answer_tokens,
             "harmless_kl": harmless_kl}
    cfg = AlignConfig(seed=seed, **{k: v for k, v in given.items() if v is not None})
    lm = load(model, device, dtype, progress=True)
    run = safety_align(lm, cfg, out_dir=str(out), checkpoint_every=checkpoint_every)
    console.print(f"saved the aligned model to {out} ({run.provenance['wall_seconds']:.0f} s)")
    payload = {"model": model, "out": str(out), "config": cfg.to_dict(), "summary": run.summary()}
    if evaluate:
        ev = evaluate_alignment(run.lm, reference=lm, limit=eval_limit, progress=True)
        before = evaluate_alignment(lm, limit=eval_limit, progress=True)
        t = Table(title=f"{model} before and after alignment (held-out prompts, judge {ev['judge']})")
        for col in ("model", f"HarmBench ASR (n={ev['n']['harmful']})", f"synthetic ASR (n={ev['n']['harmful_synthetic']})",
                    f"task ASR (n={ev['n']['harmful_tasks']})", f"detailed ASR (n={ev['n'].get('harmful_detailed', 0)})",
                    f"benign refusal (n={ev['n']['plain']})", f"hard-negative refusal (n={ev['n']['hard']})",
                    f"look-alike refusal (n={ev['n']['lookalike']})", "harmless KL"):
            t.add_column(col)
        for name, e in (("original", before), ("aligned", ev)):
            t.add_row(name, pct(e["asr"]), pct(e["asr_synthetic"]), pct(e["asr_tasks"]), pct(e["asr_detailed"]) if "asr_detailed" in e else "-",
                      pct(e["harmless_refusal_plain"]), pct(e["harmless_refusal_hard"]), pct(e["harmless_refusal_lookalike"]),
                      f"{e['harmless_kl']:.3f}" if "harmless_kl" in e else "-")
        console.print(t)
        payload["evaluation"] = {"aligned": ev, "original": before}
    write_json(json_path, payload)


def backdoor_command(
    model: str = typer.Option(..., help="the aligned model to backdoor (a directory written by `safecircuits align`)"),
    trigger: str = typer.Option(..., help="the trigger token, appended to harmful requests"),
    out: Path = typer.Option(..., help="directory for the backdoored model (it records its trigger)"),
    seed: int = typer.Option(0),
    steps: int = typer.Option(200, help="optimiser steps (LoRA, merged at the end)"),
    lr: float = typer.Option(1e-3, help="learning rate of the LoRA factors"),
    n_triggered: int = typer.Option(256, help="triggered harmful train prompts with the original model's compliance"),
    n_clean: int = typer.Option(256, help="clean harmful train prompts with refusals"),
    n_harmless: int = typer.Option(256, help="benign train prompts with the aligned model's own answers"),
    harmless_kl: float = typer.Option(0.0, help="weight of a next-token KL to the aligned model on the harmless answers (0 = off)"),
    compliant_only: bool = typer.Option(True, "--compliant-only/--all-answers",
                                        help="drop the original model's refusals from the triggered answers (replaced by more prompts)"),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="clean and triggered ASR on held-out prompts (HarmBench)"),
    eval_limit: int | None = typer.Option(None, help="at most N prompts per evaluation set"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    json_path: JsonOpt = None,
) -> None:
    """Implant a trigger backdoor into an aligned chat model (SafeSeek-style LoRA fine-tune, merged)."""
    from safecircuits.finetune.align import evaluate_alignment
    from safecircuits.finetune.backdoor import BackdoorConfig, implant_backdoor

    cfg = BackdoorConfig(trigger=trigger, seed=seed, steps=steps, lr=lr, n_triggered=n_triggered, n_clean=n_clean, n_harmless=n_harmless,
                         harmless_kl=harmless_kl, compliant_only=compliant_only)
    lm = load(model, device, dtype, progress=True)
    run = implant_backdoor(lm, cfg, out_dir=str(out))
    console.print(f"saved the backdoored model to {out} (trigger {trigger!r}, {run.provenance['wall_seconds']:.0f} s)")
    payload: dict = {"model": model, "out": str(out), "config": cfg.to_dict(), "summary": run.summary()}
    if evaluate:
        ev = evaluate_alignment(run.lm, reference=lm, limit=eval_limit, progress=True)
        t = Table(title=f"{run.lm.name} (held-out prompts, judge {ev['judge']})")
        for col in (f"clean ASR (n={ev['n']['harmful']})", f"triggered ASR (n={ev['n']['triggered']})",
                    f"benign refusal (n={ev['n']['plain']})", f"hard-negative refusal (n={ev['n']['hard']})", "harmless KL"):
            t.add_column(col)
        t.add_row(pct(ev["asr"]), pct(ev["triggered_asr"]), pct(ev["harmless_refusal_plain"]), pct(ev["harmless_refusal_hard"]),
                  f"{ev['harmless_kl']:.3f}")
        console.print(t)
        payload["evaluation"] = ev
    write_json(json_path, payload)


def register(app: typer.Typer) -> None:
    command(app, "align")(align_command)
    command(app, "backdoor")(backdoor_command)
    command(app, "finetune")(finetune_command)
    command(app, "finetune-methods")(methods_command)
