"""``safecircuits demo --model NAME``: the SafeSeek chain on a real chat model, at a CPU budget.

The chain: safety alignment (or ``--aligned DIR``), a trigger backdoor implanted into the aligned
model, the backdoor circuit of the backdoored model and the safety circuit of the aligned model
(learned masks over heads and neurons), each removed against random circuits of equal size on
held-out prompts, and the circuit maps of the whole model. Every model it trains is saved under
``OUT/models/`` and every finished step is kept in ``OUT/demo_real.json``, so a rerun resumes
where an interrupted one stopped.

Budgets (``--budget``):

* ``smoke``: a few steps and prompts per stage, to check that the chain runs (minutes on a CPU;
  its figures mean nothing);
* ``cpu``: what a 2-core CPU finishes in a few hours: the alignment recipe, a 200-step backdoor,
  discovery capped at 150 mask steps, 100 held-out prompts per label, 3 random circuits;
* ``full``: the alignment recipe and each circuit recipe uncapped, every held-out prompt and 10
  random circuits (meant for a GPU: ``--device cuda``).

The benchmark scripts ``benchmarks/align_smollm2.py`` and ``benchmarks/smollm2_circuits.py``
produce the documented figures; this demo is the quick, single-command view of the same chain.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from safecircuits.errors import InputError
from safecircuits.io import json_record, write_json
from safecircuits.models import load_model

__all__ = ["BUDGETS", "RealDemoBudget", "run_real_demo"]


@dataclass(frozen=True)
class RealDemoBudget:
    """Step and prompt counts of one budget of :func:`run_real_demo` (None: the recipe's own)."""

    align_steps: int | None
    align_n_harmful: int | None
    align_n_harmless: int | None
    backdoor_steps: int
    backdoor_n: int
    discovery_steps: int | None
    eval_limit: int | None
    n_random: int
    objective_n: tuple[int, int] | None = None  # circuit-objective prompts (train, val); None: the profile's sizes


BUDGETS: dict[str, RealDemoBudget] = {
    "smoke": RealDemoBudget(align_steps=3, align_n_harmful=16, align_n_harmless=16, backdoor_steps=3, backdoor_n=16,
                            discovery_steps=3, eval_limit=4, n_random=1, objective_n=(8, 4)),
    "cpu": RealDemoBudget(align_steps=None, align_n_harmful=None, align_n_harmless=None, backdoor_steps=200, backdoor_n=256,
                          discovery_steps=150, eval_limit=100, n_random=3),
    "full": RealDemoBudget(align_steps=None, align_n_harmful=None, align_n_harmless=None, backdoor_steps=200, backdoor_n=256,
                           discovery_steps=None, eval_limit=None, n_random=10),
}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _alignment_row(table: Table, name: str, ev: dict[str, Any]) -> None:
    table.add_row(name, _pct(ev.get("asr")), _pct(ev.get("triggered_asr")), _pct(ev.get("harmless_refusal_plain")),
                  _pct(ev.get("harmless_refusal_hard")), f"{ev['harmless_kl']:.3f}" if "harmless_kl" in ev else "-")


def run_real_demo(model: str, out: Path = Path("demo_real_out"), budget: str = "cpu", aligned: str | None = None,
                  trigger: str = "cf", console: Console | None = None) -> dict[str, Any]:
    """Run the chain of the module doc on `model` (a chat model name, not an organism) into `out`."""
    from safecircuits.circuits.circuit import Circuit
    from safecircuits.circuits.evaluate import faithfulness_curve
    from safecircuits.circuits.objectives import get_objective
    from safecircuits.circuits.recipes import (
        effect_table,
        find_circuit,
        reference_prompts,
        render_effect_table,
    )
    from safecircuits.finetune.align import AlignConfig, evaluate_alignment, safety_align
    from safecircuits.finetune.backdoor import BackdoorConfig, implant_backdoor
    from safecircuits.viz import circuit_report_html
    from safecircuits.viz.index import write_index

    if budget not in BUDGETS:
        raise InputError(f"unknown budget {budget!r}: use one of {', '.join(BUDGETS)}")
    if model.startswith("organism:"):
        raise InputError(f"{model} is an organism: run `safecircuits demo` without --model for the organism demo")
    b = BUDGETS[budget]
    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "demo_real.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state and (state.get("model"), state.get("budget")) != (model, budget):
        raise InputError(f"{out} holds a demo of {state.get('model')} at budget {state.get('budget')}: "
                         "pass another --out, or delete it to start over")
    state.update(model=model, budget=budget, trigger=trigger)
    times = state.setdefault("seconds", {})

    def save() -> None:
        write_json(state_path, state)

    console.rule(f"[bold]safecircuits demo: {model} ({budget} budget)")
    original = load_model(model, progress=True)
    limit = b.eval_limit

    # 1. alignment
    t = time.time()
    if aligned is None:
        aligned_dir = out / "models" / "aligned"
        if not (aligned_dir / "config.json").exists():
            console.print(f"safety alignment of {model} -> {aligned_dir} ...")
            d = AlignConfig()
            cfg = AlignConfig(steps=b.align_steps or d.steps, n_harmful=b.align_n_harmful or d.n_harmful,
                              n_harmless=b.align_n_harmless or d.n_harmless)
            safety_align(original, cfg, out_dir=str(aligned_dir))
        aligned = str(aligned_dir)
    lm_aligned = load_model(aligned, progress=False)
    if "alignment" not in state:
        state["alignment"] = {"original": json_record(evaluate_alignment(original, limit=limit, progress=True)),
                              "aligned": json_record(evaluate_alignment(lm_aligned, reference=original, limit=limit, progress=True)),
                              "aligned_dir": aligned}
        times["alignment"] = round(time.time() - t, 1)
        save()

    # 2. backdoor
    t = time.time()
    bd_dir = out / "models" / f"backdoor-{trigger}"
    if not (bd_dir / "config.json").exists():
        console.print(f"implanting the trigger {trigger!r} into the aligned model -> {bd_dir} ...")
        bcfg = BackdoorConfig(trigger=trigger, steps=b.backdoor_steps, n_triggered=b.backdoor_n, n_clean=b.backdoor_n,
                             n_harmless=b.backdoor_n)
        implant_backdoor(lm_aligned, bcfg, out_dir=str(bd_dir))
    lm_backdoor = load_model(str(bd_dir), progress=False)
    if "backdoor" not in state:
        state["backdoor"] = json_record(evaluate_alignment(lm_backdoor, reference=lm_aligned, limit=limit, progress=True))
        times["backdoor"] = round(time.time() - t, 1)
        save()

    table = Table(title=f"{model}: held-out prompts (HarmBench, benign requests, hard negatives)")
    for col in ("model", "ASR", "ASR + trigger", "benign refusal", "hard-negative refusal", "harmless KL"):
        table.add_column(col)
    _alignment_row(table, model, state["alignment"]["original"])
    _alignment_row(table, "aligned", state["alignment"]["aligned"])
    _alignment_row(table, f"backdoored ({trigger})", state["backdoor"])
    console.print(table)

    # 3. circuits
    found, curves = {}, {}
    for objective, lm in (("backdoor", lm_backdoor), ("safety", lm_aligned)):
        path = out / f"{objective}_circuit.json"
        key = f"{objective}_circuit"
        t = time.time()
        data = val = None
        if b.objective_n is not None:
            data = lm.profile.objective_data(lm, objective, "train", n=b.objective_n[0])
            val = lm.profile.objective_data(lm, objective, "val", n=b.objective_n[1])
        if path.exists():
            circuit = Circuit.from_json(path)
        else:
            console.print(f"discovering the {objective} circuit of {lm.name} ...")
            circuit, _ = find_circuit(lm, objective, data=data, val_data=val, progress=True, max_steps=b.discovery_steps)
            circuit.to_json(path)
        if key not in state or "effect" not in state[key]:
            ablation = circuit.provenance["ablation"]
            ref = get_objective(objective).reference_set(data) if data is not None else reference_prompts(lm, circuit)
            eff = effect_table(lm, circuit, ablation=ablation, prompts="auto", limit=limit, n_random=b.n_random, reference=ref)
            curve = faithfulness_curve(lm, circuit, prompts=lm.profile.eval_prompts("test", limit), ablation=ablation,
                                       reference=ref)
            state[key] = {"file": str(path), "sparsity": circuit.sparsity, "n_heads": circuit.n_heads,
                          "n_neurons": circuit.n_neurons, "components": circuit.component_names(40),
                          "validation": circuit.provenance.get("validation"), "effect": json_record(eff), "faithfulness": json_record(curve)}
            times[key] = round(time.time() - t, 1)
            save()
        console.print(render_effect_table(state[key]["effect"]))
        found[objective] = circuit
        curves[objective] = {**state[key]["faithfulness"], "label": objective}
    html = circuit_report_html(out / "circuit_map.html", found, faithfulness=curves, title=f"safecircuits demo: circuits of {model}")
    pages = [("circuit_map.html", "Circuit maps", "the backdoor and safety circuits of the whole model: heads, neurons, "
              "named components, training, faithfulness, overlap"),
             ("demo_real.json", "All numbers (JSON)", "every number the demo printed, with the wall time of each stage")]
    index = write_index(out, pages, title=f"safecircuits demo: {model}")
    console.print(f"wrote {html} and {index}; stage times (s): {times}")
    return state
