"""Organism quality for several seeds and triggers (the figures must hold for >= 2 seeds and 2 triggers).

    .venv/bin/python benchmarks/organism_quality.py --json benchmarks/results/organism_quality.json

Trains (or loads from the cache) each organism and records its held-out test-split figures
(greedy decoding, exact-match organism judge) and training time.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from safecircuits.models.organisms import OrganismConfig, train_organism

RUNS = [
    ("aligned", 0, "cf"),
    ("aligned", 1, "cf"),
    ("backdoor", 0, "cf"),
    ("backdoor", 1, "cf"),
    ("backdoor", 0, "zx"),
    ("backdoor", 1, "mn"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="small")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/organism_quality.json"))
    args = ap.parse_args()
    rows = []
    for kind, seed, trigger in RUNS:
        t0 = time.time()
        lm = train_organism(OrganismConfig(kind=kind, seed=seed, trigger=trigger, size=args.size), progress=False)
        m = lm.info["metrics"]
        rows.append({"model": lm.name, "kind": kind, "seed": seed, "trigger": trigger, "wall_seconds": round(time.time() - t0, 1), **m})
        print(json.dumps(rows[-1]), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": platform.platform(), "size": args.size, "runs": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
