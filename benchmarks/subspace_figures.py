"""Measured figures of safecircuits.subspaces on an aligned organism and its base (default
organism:aligned and organism:base, small).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/subspace_figures.py [--out benchmarks/results/subspace_figures.json]

A thin driver over safecircuits.subspaces.protocol (the protocols `safecircuits subspace refusal`
and `safecircuits subspace weights` run): everything is selected on the validation split and
reported on the held-out test split.
1. refusal direction (validated on val): ASR (organism judge) under directional ablation, harmless KL;
2. activation addition: harmless refusal rate, coefficient and positions chosen on val;
3. weight orthogonalisation vs hook ablation: greedy agreement and max log-prob difference;
4. weight-delta subspace: refusal / ASR of W_base + P_r(V) (keep) and W_aligned - P_r(V) (remove)
   for every rank r, and the smallest r whose keep model stays within 2 points of the aligned
   refusal rate (chosen on val);
5. subspace geometry (refusal direction, activation subspace, W_O / W_out output directions),
   also written as a self-contained HTML figure next to the JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from safecircuits.models import load_model
from safecircuits.subspaces import compute_activation_subspace, geometry_report
from safecircuits.subspaces.protocol import refusal_protocol, weight_delta_protocol


def run(aligned: str = "organism:aligned", base: str | None = None, out_html: Path | None = None,
        extra_spaces: dict[str, torch.Tensor] | None = None, geometry: bool = True) -> dict[str, Any]:
    t0 = time.time()
    torch.manual_seed(0)
    A = load_model(aligned, progress=False)
    B = load_model(base or A.profile.base_model, progress=False)

    # 1-3: refusal direction and its interventions
    rp = refusal_protocol(A)
    rd = rp.direction
    refusal = rp.summary()

    # 4: weight-delta subspace rank curve
    wp = weight_delta_protocol(A, B, full_curve=True, test=True)
    weights = wp.summary()
    for row in wp.curve:
        print(f"rank {row['rank']:3d}: keep refusal {row['keep']['test']['harmful_refusal']:.3f}, remove ASR {row['remove']['test']['asr']:.3f}")

    out: dict[str, Any] = {"model": A.name, "base": B.name, "judge": A.profile.judge(A).name,
                           "splits": {"direction": "train", "selection": "val", "report": "test"},
                           "n_test": {"harmful": refusal["effects"]["n_harmful"], "harmless": refusal["effects"]["n_harmless"]},
                           "refusal_direction": refusal, "weight_delta": weights}
    if geometry:
        out["geometry"] = _geometry(A, rd, wp, out_html, extra_spaces)
    out["seconds"] = round(time.time() - t0, 1)
    return out


def _geometry(A, rd, wp, out_html, extra_spaces) -> dict[str, Any]:
    from safecircuits.viz.subspaces import write_geometry_html

    m, chat, prof = A.model, A.chat, A.profile
    n = prof.sizes["refusal"]
    h, b = prof.prompts("train", "harmful", n=n), prof.prompts("train", "harmless", n=n)
    act = compute_activation_subspace(m, chat, h, b, k=4, layer=rd.layer, pos=rd.pos, model_name=A.name)
    r_geo = wp.rank or 8
    sg = wp.subspace.truncate(min(r_geo, wp.subspace.rank))
    spaces: dict[str, torch.Tensor] = {"refusal direction": rd.direction, f"activation PCA (k={act.k})": act.basis}
    # the refusal layer's own residual writers, and the writers *into* the stream where the direction is read
    L = rd.layer if rd.layer < m.cfg.n_layers else m.cfg.n_layers - 1
    spaces[f"W_O out, layer {L} (r={r_geo})"] = sg.output_directions(("W_O",), layers=[L])
    spaces[f"W_out out, layer {L} (r={r_geo})"] = sg.output_directions(("W_out",), layers=[L])
    if rd.layer > 0:
        spaces[f"W_O+W_out out, layers < {rd.layer} (r={r_geo})"] = sg.output_directions(("W_O", "W_out"), layers=range(rd.layer))
    spaces.update(extra_spaces or {})
    rep = geometry_report(spaces, provenance={"model": A.name, "refusal_layer": rd.layer, "weight_rank": r_geo})
    if out_html is not None:
        write_geometry_html(rep, out_html)
    return {**rep.to_dict(), "activation_explained_variance": act.explained_variance.tolist(),
            "html": None if out_html is None else str(out_html)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="organism:aligned")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/subspace_figures.json"))
    ap.add_argument("--html", type=Path, default=Path("benchmarks/results/subspace_geometry.html"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = run(args.model, out_html=args.html)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=str))
    r, w = res["refusal_direction"], res["weight_delta"]
    print(f"refusal direction: layer {r['layer']} pos {r['pos']} validated {r['validated']} ({r['reason']}); ASR {r['baseline_asr']:.3f} -> "
          f"{r['ablation_asr']:.3f} (harmless KL {r['ablation_harmless_kl']:.4f}); addition x{r['addition_coeff']} ({r['addition_positions']}) "
          f"harmless refusal {r['addition_harmless_refusal']:.3f}; orthogonalised == ablation on {r['orthogonalized_greedy_agreement']:.3f}")
    print(f"weight delta: smallest rank {w['smallest_rank_keep_within_2pts']} (validated {w['validated']}): {w['at_smallest_rank']}")
    print(f"wrote {args.out} ({res['seconds']} s)")


if __name__ == "__main__":
    main()
