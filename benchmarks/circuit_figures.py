"""The circuit-discovery figures on organisms (held-out test prompts never used in discovery).

    .venv/bin/python benchmarks/circuit_figures.py --json benchmarks/results/circuit_figures.json

For each organism: discover the circuit with the objective's recipe (safecircuits.circuits.recipes),
then measure full model vs circuit removed vs 10 random circuits of equal size, and, for the
planted-backdoor organisms, recovery of the planted components.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from safecircuits.circuits.recipes import effect_table, find_circuit, planted_circuit
from safecircuits.models import load_model

RUNS = [
    ("backdoor", "organism:backdoor"),
    ("backdoor", "organism:backdoor?seed=1&trigger=mn"),
    ("safety", "organism:aligned"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/circuit_figures.json"))
    ap.add_argument("--n-random", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for objective, name in RUNS:
        lm = load_model(name, progress=False)
        t0 = time.time()
        circuit, _ = find_circuit(lm, objective, progress=False)
        secs = time.time() - t0
        eff = effect_table(lm, circuit, ablation=circuit.provenance["ablation"], prompts="organism:test", n_random=args.n_random)
        row = {"objective": objective, "model": name, "components": circuit.components(), "sparsity": circuit.sparsity,
               "discovery_seconds": round(secs, 1), "ablation": circuit.provenance["ablation"],
               "full": eff["full"], "removed": eff["remove"], "random_mean": eff.get("random"), "random_std": eff.get("random_std"),
               "utility_kept": eff["utility_kept"]}
        planted = planted_circuit(lm)
        if planted is not None:
            row["planted"] = planted.components()
            row["planted_iou"] = circuit.iou(planted)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("components",)}, default=str), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": platform.platform(), "runs": rows}, indent=2, default=str))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
