"""SAEs with and without each sequence's first token, side by side, on one model and hook.

    .venv/bin/python benchmarks/sae_first_token.py --json benchmarks/results/sae_first_token_smollm2.json \
        [--model smollm2-135m-instruct] [--hook blocks.24.hook_resid_pre] [--tokens 1000000]

Chat models such as SmolLM2 park an attention sink on the first token: its residual stream is
orders of magnitude larger than any other token's. This driver measures what that does to an SAE:

* ``norms``: the residual norm at the hook of the first real token of each val prompt against
  every other token (median, 99th percentile, max) and the share of the activation variance the
  first tokens hold;
* ``all_tokens`` and ``no_first_token`` (the default parts with ``norms``): two top-k SAEs with identical settings (SAELens, the
  profile's SAE prompts of the train split), one trained on every token and one with
  ``exclude_first_token=True``; each evaluated on the val SAE prompts without the first token, and
  the all-token SAE also over every token (explained variance, L0, CE recovered, dead latents);
* ``no_first_token_dead_window_64k`` and ``no_first_token_d_sae_2304`` (``--parts``): the
  no-first-token SAE with a shorter dead-latent window for AuxK, and with half the latents;
* ``no_first_token_b_dec_mean``: the no-first-token SAE with its decoder bias started at the
  buffer's mean activation instead of zero; ``no_first_token_b_dec_mean_dead_window_16k``: that
  and AuxK on latents silent for 16k tokens.

Each SAE lives under ``$SAFECIRCUITS_CACHE/sae_first_token/<model fingerprint[:8]>/<hook>/<variant>``
and is reused when present; finished parts stay in the JSON (``--redo`` reruns some).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from safecircuits.io import json_record, write_json
from safecircuits.models import load_model
from safecircuits.models.loaded import cache_dir

# each SAE variant: its overrides of the shared settings (--k, --d-sae, --tokens)
VARIANTS: dict[str, dict[str, Any]] = {
    "all_tokens": {"exclude_first_token": False},
    "no_first_token": {"exclude_first_token": True},
    # against dead latents: AuxK on latents silent for 64k tokens (the default waits a quarter of
    # the training tokens), and a dictionary half the size
    "no_first_token_dead_window_64k": {"exclude_first_token": True, "dead_window_tokens": 65_536},
    "no_first_token_d_sae_2304": {"exclude_first_token": True, "d_sae": 2304},
    # the decoder bias (subtracted before encoding) starts at the buffer's mean instead of zero
    "no_first_token_b_dec_mean": {"exclude_first_token": True, "b_dec_init": "mean"},
    # both: the mean start, and AuxK on latents silent for 16k tokens (64 steps of 256)
    "no_first_token_b_dec_mean_dead_window_16k": {"exclude_first_token": True, "b_dec_init": "mean", "dead_window_tokens": 16_384},
}
DEFAULT_PARTS = "norms,all_tokens,no_first_token"


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@torch.no_grad()
def stage_norms(lm, hook: str) -> dict[str, Any]:
    from safecircuits.data.chat import iter_batches
    from safecircuits.features.sae import first_token_mask, hook_layer

    first_n: list[torch.Tensor] = []
    rest_n: list[torch.Tensor] = []
    xs_first: list[torch.Tensor] = []
    xs_rest: list[torch.Tensor] = []
    val = lm.profile.sae_prompts("val")
    for part in (val.filter(has_response=True), val.filter(has_response=False)):
        if not len(part):
            continue
        with_resp = part.responses[0] is not None
        for b in iter_batches(lm.chat, part, 32, max_len=lm.model.cfg.n_ctx, with_responses=with_resp):
            _, cache = lm.model.run_with_cache(b.tokens.to(lm.model.cfg.device), attention_mask=b.attention_mask.to(lm.model.cfg.device),
                                               names_filter=hook, stop_at_layer=hook_layer(hook) + 1)
            x = cache[hook].float().cpu()
            first = first_token_mask(b.attention_mask)
            rest = b.attention_mask.bool() & ~first
            xs_first.append(x[first])
            xs_rest.append(x[rest])
    f, r = torch.cat(xs_first).double(), torch.cat(xs_rest).double()
    first_n, rest_n = f.norm(dim=-1), r.norm(dim=-1)
    allx = torch.cat([f, r])
    mean = allx.mean(0)
    total_ss = ((allx - mean) ** 2).sum()
    first_ss = ((f - mean) ** 2).sum()
    return {
        "n_first": int(f.shape[0]), "n_other": int(r.shape[0]),
        "first_token_norm_median": float(first_n.median()),
        "other_norm_median": float(rest_n.median()), "other_norm_p99": float(rest_n.quantile(0.99)), "other_norm_max": float(rest_n.max()),
        "first_token_variance_share": float(first_ss / total_ss),
    }


def stage_sae(lm, hook: str, work: Path, variant: str, args) -> dict[str, Any]:
    from safecircuits.features import load_sae
    from safecircuits.features.protocol import train_protocol_sae
    from safecircuits.features.sae import evaluate_sae

    t = time.time()
    d = work / hook / variant
    if (d / "cfg.json").exists() and (d / "safecircuits_sae.json").exists():
        sae = load_sae(d, device=str(lm.model.cfg.device))
        rec = json.loads((d / "safecircuits_sae.json").read_text())
        quality, prov = rec.get("quality", {}), rec.get("provenance", {})
        _log(f"reusing the SAE in {d}")
    else:
        tr = train_protocol_sae(lm, hook, d, progress=True, **{"k": args.k, "d_sae": args.d_sae, "training_tokens": args.tokens,
                                                                **VARIANTS[variant]})
        sae, quality, prov = tr.sae, tr.quality, tr.provenance
    own = bool(sae.cfg.metadata.exclude_first_token)
    if own:  # an SAE that never saw the first token is neither meant for it nor spliced there
        by_domain = {"no_first_token": quality}
    else:  # the all-token SAE also without the first token: the figures comparable with the other SAE's
        sae.cfg.metadata.exclude_first_token = True
        by_domain = {"all_tokens": quality, "no_first_token": evaluate_sae(lm.model, lm.chat, sae, hook, lm.profile.sae_prompts("val"))}
        sae.cfg.metadata.exclude_first_token = False
    return {"dir": str(d), "exclude_first_token": own, "settings": prov.get("hyperparameters", {}),
            "buffer_tokens": prov.get("buffer_tokens"), "quality": by_domain, "seconds": round(time.time() - t, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct", help="a model name or a model directory")
    ap.add_argument("--hook", default="blocks.24.hook_resid_pre")
    ap.add_argument("--k", type=int, default=32, help="active SAE features per token (top-k)")
    ap.add_argument("--d-sae", type=int, default=4608)
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--parts", default=DEFAULT_PARTS, help=f"parts to run, comma-separated: norms, {', '.join(VARIANTS)}")
    ap.add_argument("--redo", default="", help="parts to rerun even if done")
    args = ap.parse_args()
    import platform

    from safecircuits.models.loaded import weights_fingerprint
    from safecircuits.runtime import describe, dtype_name

    lm = load_model(args.model, device=args.device or "auto", dtype=args.dtype, progress=False)
    fp = weights_fingerprint(lm.model)
    res: dict[str, Any] = json.loads(args.json.read_text()) if args.json.exists() else {}
    key = (res.get("model", {}).get("fingerprint"), res.get("hook"))
    if key not in ((None, None), (fp, args.hook)):
        res = {"superseded": [*res.get("superseded", []), {k: v for k, v in res.items() if k != "superseded"}]}
    res.update({"model": {"name": args.model, "fingerprint": fp}, "hook": args.hook,
                "environment": {**describe(), "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                                "dtype": dtype_name(next(lm.model.parameters()).dtype)}})
    work = cache_dir("sae_first_token") / fp[:8]
    redo = set(args.redo.split(","))
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p != "norms" and p not in VARIANTS]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}: use norms, {', '.join(VARIANTS)}")
    for part in parts:
        if part in res and part not in redo:
            _log(f"{part}: done, kept")
            continue
        _log(f"{part}: running")
        res[part] = stage_norms(lm, args.hook) if part == "norms" else stage_sae(lm, args.hook, work, part, args)
        _log(f"{part}: {json.dumps(res[part])[:600]}")
        write_json(args.json, json_record(res))


if __name__ == "__main__":
    main()
