"""Cost of one mask-training step vs a plain forward+backward of the frozen model, same batch.

    .venv/bin/python benchmarks/mask_step_speed.py --json benchmarks/results/mask_step_speed.json [--smollm2]

Three timings, interleaved in one run (the machines are noisy, so only ratios are reported):
* ``plain``: forward + backward of the frozen model, gradient w.r.t. the embedding output
  (the same backward graph a mask step needs, without the mask hooks);
* ``plain_params``: forward + backward with gradients for all weights (an ordinary training step);
* ``mask``: forward with head and neuron masks (sigmoid-STE, zero ablation, every layer) +
  backward to the mask logits + Adam step on the logits.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from safecircuits.circuits.hooks import mask_hooks
from safecircuits.circuits.masks import SigmoidSTEMask
from safecircuits.data.chat import encode_batch
from safecircuits.models import load_model


def bench(name: str, batch_size: int, reps: int) -> dict:
    lm = load_model(name, progress=False)
    model, chat = lm.model, lm.chat
    if "organism" in lm.info:
        from safecircuits.models.language import Language

        ps = Language(0).prompt_set("train", "harmful")[:batch_size]
    else:
        from safecircuits.data.synthetic import synthetic_harmful

        ps = synthetic_harmful(batch_size, seed=0)
    b = encode_batch(chat, ps.prompts, ps.responses)
    c = model.cfg
    heads = SigmoidSTEMask((c.n_layers, c.n_heads))
    neurons = SigmoidSTEMask((c.n_layers, c.d_mlp))
    opt = torch.optim.Adam(list(heads.parameters()) + list(neurons.parameters()), lr=0.01)
    labels = b.labels[:, 1:]

    def loss_of(logits):
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=-100)

    def plain():
        for p in model.parameters():
            p.requires_grad_(False)
        emb_hook = [("hook_embed", lambda x, hook: x.requires_grad_(True))]
        with model.hooks(fwd_hooks=emb_hook):
            loss_of(model(b.tokens)).backward()

    def plain_params():
        for p in model.parameters():
            p.requires_grad_(True)
        model.zero_grad(set_to_none=True)
        loss_of(model(b.tokens)).backward()
        for p in model.parameters():
            p.requires_grad_(False)

    def mask():
        for p in model.parameters():
            p.requires_grad_(False)
        hooks = mask_hooks(heads.sample(), neurons.sample())
        with model.hooks(fwd_hooks=hooks):
            loss = loss_of(model(b.tokens))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    fns = {"plain": plain, "plain_params": plain_params, "mask": mask}
    for f in fns.values():  # warm-up
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": name, "batch_size": batch_size, "seq_len": int(b.tokens.shape[1]), "reps": reps,
        "median_seconds": med,
        "ratio_mask_vs_plain": med["mask"] / med["plain"],
        "ratio_mask_vs_plain_params": med["mask"] / med["plain_params"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/mask_step_speed.json"))
    ap.add_argument("--smollm2", action="store_true", help="also benchmark SmolLM2-135M (needs the wheel once)")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    rows = [bench("organism:aligned", 32, args.reps)]
    print(json.dumps(rows[-1]), flush=True)
    if args.smollm2:
        rows.append(bench("smollm2-135m-instruct", 4, max(5, args.reps // 4)))
        print(json.dumps(rows[-1]), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": platform.platform(), "threads": torch.get_num_threads(), "runs": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
