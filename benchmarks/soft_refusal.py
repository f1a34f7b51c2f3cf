"""Soft refusal of several chat models on the held-out prompt sets, side by side.

    .venv/bin/python benchmarks/soft_refusal.py --json benchmarks/results/soft_refusal_smollm2.json \
        --models smollm2-135m-instruct ~/.cache/safecircuits/models/smollm2-aligned [MORE ...]

For each model (a profile name or a model directory) and each prompt set of the split (HarmBench
on test, held-out synthetic and task-style harmful requests, benign requests, hard negatives,
benign look-alikes, and the triggered HarmBench prompts of a backdoored model):
the mean probability that the answer opens with one of the refusals alignment trains
(``safecircuits.finetune.align.soft_refusal``, teacher-forced). Greedy refusal rates saturate
near 0 and 1; this figure ranks models that the greedy rates cannot tell apart. Resumable: a model
whose weights fingerprint is already in the JSON is skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from safecircuits.finetune.align import soft_refusal
from safecircuits.io import write_json
from safecircuits.models import load_model
from safecircuits.models.loaded import weights_fingerprint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--models", nargs="+", required=True, help="profile names or model directories")
    ap.add_argument("--split", default="test", choices=("val", "test"))
    ap.add_argument("--limit", type=int, default=None, help="prompts per set (default: all)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default=None)
    args = ap.parse_args()
    res = json.loads(args.json.read_text()) if args.json.exists() else {}
    res.setdefault("settings", {"split": args.split, "limit": args.limit})
    if res["settings"] != {"split": args.split, "limit": args.limit}:
        raise SystemExit(f"{args.json} holds split/limit {res['settings']}: pass another --json")
    rows = res.setdefault("models", {})
    for spec in args.models:
        path = Path(spec).expanduser()
        lm = load_model(str(path) if path.exists() else spec, device=args.device, dtype=args.dtype, progress=False)
        fp = weights_fingerprint(lm.model)
        if any(r.get("weights_fingerprint") == fp for r in rows.values()):
            print(spec, "already measured", flush=True)
            continue
        t = time.time()
        row = soft_refusal(lm, split=args.split, limit=args.limit)
        row.update(source=spec, weights_fingerprint=fp, trigger=lm.profile.trigger, seconds=round(time.time() - t, 1))
        rows[f"{lm.name}@{fp[:8]}"] = row
        print(spec, {k: round(v, 4) for k, v in row["refusal_prob"].items()}, f"{row['seconds']} s", flush=True)
        write_json(args.json, res)
        del lm


if __name__ == "__main__":
    main()
