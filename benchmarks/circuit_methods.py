"""Compare discovery methods at equal circuit size (sigmoid-STE vs hard-concrete masks vs
attribution patching vs activation patching), on organisms, held-out test prompts.

    .venv/bin/python benchmarks/circuit_methods.py --objective backdoor --json benchmarks/results/circuit_methods_backdoor.json

The sigmoid-STE recipe circuit (seed 0) fixes the size; hard-concrete is discretised to the
same share (`target_sparsity`), the patching baselines take the same head and neuron counts.
Mask methods run with `--seeds` seeds for seed stability (IoU). For each method: ASR change when
removed (triggered ASR for backdoor), utility kept (harmless compliance and exact match, removed /
full), wall time of discovery.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from safecircuits.circuits.baselines import activation_patching, attribution_patching
from safecircuits.circuits.discover import DiscoveryConfig
from safecircuits.circuits.evaluate import circuit_effect, seed_stability
from safecircuits.circuits.objectives import get_objective
from safecircuits.circuits.recipes import RECIPES, find_circuit, reference_prompts
from safecircuits.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--objective", default="backdoor", choices=["backdoor", "safety"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    name = "organism:backdoor" if args.objective == "backdoor" else "organism:aligned"
    lm = load_model(name, progress=False)
    data = lm.profile.objective_data(lm, args.objective, "train")
    val = lm.profile.objective_data(lm, args.objective, "val")
    key = "triggered_asr" if args.objective == "backdoor" else "asr"
    recipe = RECIPES[args.objective]
    circuits: dict[str, list] = {"sigmoid-ste": [], "hard-concrete": []}
    times: dict[str, list[float]] = {"sigmoid-ste": [], "hard-concrete": [], "attribution": [], "activation": []}
    for seed in range(args.seeds):
        t = time.time()
        c, _ = find_circuit(lm, args.objective, data, val, progress=False, seed=seed)
        times["sigmoid-ste"].append(time.time() - t)
        circuits["sigmoid-ste"].append(c)
    ref = circuits["sigmoid-ste"][0]
    share = ref.n_components / ref.total_components
    for seed in range(args.seeds):
        t = time.time()
        c, _ = find_circuit(lm, args.objective, data, val, progress=False, seed=seed, mask="hard-concrete", target_sparsity=share)
        times["hard-concrete"].append(time.time() - t)
        circuits["hard-concrete"].append(c)
    cfg = DiscoveryConfig(progress=False, **{k: v for k, v in recipe["config"].items() if k in ("ablation", "penalty_norm")})
    obj = get_objective(args.objective, **recipe["objective"])
    for method, fn in (("attribution", attribution_patching), ("activation", activation_patching)):
        t = time.time()
        c = fn(lm, obj, data, cfg, n_heads=ref.n_heads, n_neurons=ref.n_neurons)
        times[method].append(time.time() - t)
        circuits[method] = [c]
    ablation = recipe["config"]["ablation"]
    reference = reference_prompts(lm, ref)
    rows = []
    for method, cs in circuits.items():
        c = cs[0]
        eff = circuit_effect(lm, c, "organism:test", ablation=ablation, modes=("full", "remove"), reference=reference)
        full, rem = eff["full"], eff["remove"]
        row = {
            "method": method, "n_heads": c.n_heads, "n_neurons": c.n_neurons, "sparsity": c.sparsity["overall"],
            f"{key}_full": full[key], f"{key}_removed": rem[key], f"{key}_change": rem[key] - full[key],
            "harmless_compliance_kept": eff["utility_kept"]["remove"]["harmless_compliance"],
            "harmless_exact_kept": eff["utility_kept"]["remove"]["harmless_exact_match"],
            "refusal_kept": (rem["refusal_rate"] / full["refusal_rate"]) if full["refusal_rate"] else None,
            "seconds_mean": sum(times[method]) / len(times[method]),
        }
        if len(cs) > 1:
            st = seed_stability(cs)
            row["seed_iou_mean"] = st["mean_iou"]
            row["seed_iou_min"] = st["min_iou"]
            row["sizes_per_seed"] = [x.n_components for x in cs]
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = args.json or Path(f"benchmarks/results/circuit_methods_{args.objective}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "model": name, "objective": args.objective, "ablation": ablation,
                               "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
