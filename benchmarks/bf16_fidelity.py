"""What bf16 weights change against float32 on SmolLM2, original and aligned.

    .venv/bin/python benchmarks/bf16_fidelity.py --json benchmarks/results/bf16_fidelity.json \
        [--aligned $SAFECIRCUITS_CACHE/models/smollm2-aligned] [--discovery-steps 60]

For each model, in both dtypes, on the chat profile's val prompts (harmful and harmless):

* mean next-token KL(float32 || bf16) and greedy next-token agreement;
* 48-token greedy answers: identical, identical first 8 words, and the keyword judge's refusal
  verdict agreeing;
* on the aligned model (which refuses, so has a refusal direction and a safety circuit): the
  selected refusal direction (layer, position, cosine between the two directions) and a safety
  circuit found with the same seed and budget (IoU, sizes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from safecircuits.evaluation.generate import generate
from safecircuits.evaluation.metrics import kl_divergence, next_token_logprobs
from safecircuits.io import write_json
from safecircuits.models import load_model


def _pair(name: str) -> tuple[Any, Any]:
    return (load_model(name, device="cpu", dtype="float32", progress=False),
            load_model(name, device="cpu", dtype="bfloat16", progress=False))


def outputs(name: str, n: int) -> dict[str, Any]:
    a, b = _pair(name)
    prof = a.profile
    ps = prof.prompts("val", "harmful", n=n, seed=0) + prof.prompts("val", "harmless", n=n, seed=0)
    la, lb = next_token_logprobs(a.model, a.chat, ps.prompts), next_token_logprobs(b.model, b.chat, ps.prompts)
    ga = generate(a.model, a.chat, ps.prompts, max_new_tokens=48, batch_size=48)
    gb = generate(b.model, b.chat, ps.prompts, max_new_tokens=48, batch_size=48)
    judge = prof.judge(a)
    va, vb = judge.refused(ps.prompts, ga), judge.refused(ps.prompts, gb)
    n_ = len(ps)
    return {"model": name, "n_prompts": n_, "kl": kl_divergence(la, lb),
            "next_token_agreement": float((la.argmax(-1) == lb.argmax(-1)).float().mean()),
            "greedy_identical": sum(x == y for x, y in zip(ga, gb, strict=True)) / n_,
            "greedy_first8_identical": sum(x.split()[:8] == y.split()[:8] for x, y in zip(ga, gb, strict=True)) / n_,
            "refusal_verdict_agreement": sum(x == y for x, y in zip(va, vb, strict=True)) / n_,
            "refusal_rate_float32": sum(va) / n_, "refusal_rate_bf16": sum(vb) / n_}


def analyses(name: str, steps: int) -> dict[str, Any]:
    from safecircuits.circuits.recipes import find_circuit
    from safecircuits.subspaces import RefusalConfig, find_refusal_direction

    out: dict[str, Any] = {}
    dirs, circuits = {}, {}
    for dt in ("float32", "bfloat16"):
        lm = load_model(name, device="cpu", dtype=dt, progress=False)
        t = time.time()
        rd = find_refusal_direction(lm, config=RefusalConfig(n_prompts=32, positions=(-1,)))
        dirs[dt] = rd
        c, _ = find_circuit(lm, "safety", progress=False, max_steps=steps, checkpoint_dir=None, validate=False)
        circuits[dt] = c
        out[dt] = {"refusal_layer": rd.layer, "refusal_pos": rd.pos, "circuit_heads": c.n_heads, "circuit_neurons": c.n_neurons,
                   "seconds": round(time.time() - t, 1)}
    out["refusal_cosine"] = float(torch.dot(dirs["float32"].direction, dirs["bfloat16"].direction))
    out["same_refusal_layer"] = dirs["float32"].layer == dirs["bfloat16"].layer
    out["circuit_iou"] = circuits["float32"].iou(circuits["bfloat16"])
    out["discovery_steps"] = steps
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--aligned", default=None, help="an aligned SmolLM2 directory (benchmarks/align_smollm2.py)")
    ap.add_argument("--n", type=int, default=48, help="val prompts per label")
    ap.add_argument("--discovery-steps", type=int, default=60)
    args = ap.parse_args()
    res: dict[str, Any] = {"original": outputs("smollm2-135m-instruct", args.n)}
    write_json(args.json, res)
    if args.aligned:
        res["aligned"] = outputs(args.aligned, args.n)
        write_json(args.json, res)
        res["aligned_analyses"] = analyses(args.aligned, args.discovery_steps)
        write_json(args.json, res)
    print(res)


if __name__ == "__main__":
    main()
