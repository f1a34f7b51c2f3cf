"""Per-step cost of CWAC vs LoRA vs plain fine-tuning, measured side by side in one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_step_cost.py --json benchmarks/results/finetune_organism_step_cost.json

For each repetition and each method (interleaved, so machine load hits all methods alike), the
same fine-tuning is run for ``--short`` and ``--long`` steps; the per-step time is
``(t_long - t_short) / (long - short)``, which cancels set-up (model copies, CWAC's reference
feature activations, PACT's safety tokens). Reported: the median over repetitions and the ratio to
``sft``. Target for CWAC: <= 1.3x sft.
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from safecircuits.finetune.benchmark import DEFAULTS, prepare_artifacts
from safecircuits.finetune.loop import FinetuneConfig, finetune
from safecircuits.finetune.methods import get_method
from safecircuits.finetune.tasks import get_task
from safecircuits.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism:aligned")
    ap.add_argument("--methods", default="sft,lora,cwac,cwac-weights-only,cwac-acts-only,pact",
                    help="comma-separated; a method may carry hyperparameters: 'cwac:anchor_source=train;lam=15'")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--short", type=int, default=10)
    ap.add_argument("--long", type=int, default=50)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/finetune_organism_step_cost.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    methods = a.methods.split(",")
    lm = load_model(a.model, progress=False)
    task = get_task("reverse-steps")
    arts = prepare_artifacts(lm, [m.split(":")[0] for m in methods], progress=False)
    data = task.train_data(lm, 0.1, DEFAULTS["n_train"], seed=0)
    safety = task.safety_data(lm, DEFAULTS["n_safety"], seed=0)
    times: dict[str, list[float]] = {m: [] for m in methods}

    def make(spec: str):
        name, _, hp = spec.partition(":")
        kw = {}
        for item in filter(None, hp.split(";")):
            k, _, v = item.partition("=")
            try:
                kw[k] = ast.literal_eval(v)
            except (ValueError, SyntaxError):
                kw[k] = v
        return get_method(name, **kw)

    def run(m: str, steps: int) -> float:
        method = make(m)
        kw = {"lora_targets": method.lora_targets} if hasattr(method, "lora_targets") else {}
        cfg = FinetuneConfig(steps=steps, lr=DEFAULTS["lora_lr"] if method.mode == "lora" else DEFAULTS["lr"],
                             batch_size=DEFAULTS["batch_size"], seed=0, progress=False, **kw)
        art = {k: arts[k] for k in method.needs} | ({"activation_subspace": arts["activation_subspace"]} if m.startswith("cwac") else {})
        t0 = time.perf_counter()
        finetune(lm, data, method, cfg, artifacts=art, safety_prompts=safety)
        return time.perf_counter() - t0

    for m in methods:  # warm-up
        run(m, 2)
    for rep in range(a.reps):
        for m in methods:
            t_short, t_long = run(m, a.short), run(m, a.long)
            times[m].append((t_long - t_short) / (a.long - a.short))
        print(f"rep {rep}: " + ", ".join(f"{m} {1000 * times[m][-1]:.1f} ms" for m in methods), flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    out = {
        "model": a.model, "batch_size": DEFAULTS["batch_size"], "safety_batch": get_method("cwac").hparams["safety_batch"],
        "reps": a.reps, "short": a.short, "long": a.long,
        "per_step_ms": {m: 1000 * v for m, v in med.items()},
        "per_step_ms_all": {m: [1000 * x for x in v] for m, v in times.items()},
        "ratio_to_sft": {m: med[m] / med["sft"] for m in methods} if "sft" in med else {},
        "ratio_to_lora": {m: med[m] / med["lora"] for m in methods} if "lora" in med else {},
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": 1,
    }
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("per_step_ms", "ratio_to_sft", "ratio_to_lora")}, indent=1))


if __name__ == "__main__":
    main()
