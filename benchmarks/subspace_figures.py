"""Measured figures of safecircuits.subspaces on organism:aligned (small) and organism:base.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/subspace_figures.py [--out benchmarks/results/subspace_figures.json]

Everything is selected on the validation split and reported on the held-out test split:
1. refusal direction: ASR (organism judge) under directional ablation, harmless KL;
2. activation addition: harmless refusal rate, coefficient chosen on val;
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

from safecircuits.evaluation.judges import get_judge
from safecircuits.evaluation.metrics import evaluate_behaviour
from safecircuits.models import load_model
from safecircuits.models.language import Language
from safecircuits.subspaces import (
    RefusalConfig,
    WeightDeltaSubspace,
    apply_delta_projection,
    compute_activation_subspace,
    find_refusal_direction,
    geometry_report,
)
from safecircuits.subspaces.effects import choose_coefficient, intervention_effects
from safecircuits.viz.subspaces import write_geometry_html

RANKS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32, 48, 64]


def _behaviour(model, chat, ps, judge) -> dict[str, float]:
    g = evaluate_behaviour(model, chat, ps, judge)
    return {"harmful_refusal": g["harmful"].refusal_rate, "asr": g["harmful"].compliance_rate,
            "harmless_compliance": g["harmless"].compliance_rate, "harmless_refusal": g["harmless"].refusal_rate}


def run(aligned: str = "organism:aligned", base: str = "organism:base", out_html: Path | None = None,
        extra_spaces: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    t0 = time.time()
    torch.manual_seed(0)
    A, B = load_model(aligned, progress=False), load_model(base, progress=False)
    m, chat = A.model, A.chat
    lang = Language(A.info["organism"]["split_seed"])
    ps = {s: (lang.prompt_set(s, "harmful"), lang.prompt_set(s, "harmless")) for s in ("train", "val", "test")}
    (h, b), (hv, bv), (ht, bt) = ps["train"], ps["val"], ps["test"]
    judge = get_judge("organism", split_seed=A.info["organism"]["split_seed"])

    # 1-3: refusal direction and its interventions
    rd = find_refusal_direction(A, h, b, hv, bv, RefusalConfig(progress=True))
    choice, grid = choose_coefficient(m, chat, rd, bv, judge)
    eff = intervention_effects(m, chat, rd, ht, bt, judge, coeff=choice["coeff"], positions=choice["positions"])
    best_all = max((g for g in grid if g["positions"] == "all"), key=lambda g: g["refusal_rate"])
    refusal = {
        "layer": rd.layer, "pos": rd.pos, "hook": rd.provenance["hook"], "norm": rd.norm, "candidates": rd.candidates,
        "baseline_asr": eff["baseline"]["harmful"]["compliance_rate"],
        "ablation_asr": eff["ablation"]["harmful"]["compliance_rate"],
        "ablation_harmless_kl": eff["ablation"]["harmless_kl"],
        "ablation_harmless_compliance": eff["ablation"]["harmless"]["compliance_rate"],
        "addition_coeff": choice["coeff"], "addition_positions": choice["positions"],
        "addition_harmless_refusal": eff["addition"]["harmless"]["refusal_rate"],
        "addition_val_grid": grid,
        "addition_all_positions_best_val": best_all,
        "orthogonalized_greedy_agreement": eff["orthogonalized"]["greedy_agreement_with_ablation"],
        "orthogonalized_max_abs_logprob_diff": eff["orthogonalized"]["max_abs_logprob_diff_vs_ablation"],
        "orthogonalized_asr": eff["orthogonalized"]["harmful"]["compliance_rate"],
        "effects": eff,
    }

    # 4: weight-delta subspace rank curve
    full_rank = min(min(s) for s in (sub_shape for sub_shape in _matrix_shapes(A, B)))
    sub = WeightDeltaSubspace.from_models(A, B, rank=full_rank)
    aligned_val, aligned_test = _behaviour(m, chat, hv + bv, judge), _behaviour(m, chat, ht + bt, judge)
    curve = []
    for r in [x for x in RANKS if x <= full_rank]:
        s = sub.truncate(r)
        row: dict[str, Any] = {"rank": r, "mean_energy": sum(s.energy.values()) / len(s.energy)}
        for mode in ("keep", "remove"):
            mm = apply_delta_projection(A, B, s, mode)
            row[mode] = {"val": _behaviour(mm, chat, hv + bv, judge), "test": _behaviour(mm, chat, ht + bt, judge)}
        curve.append(row)
        print(f"rank {r:3d}: keep refusal {row['keep']['test']['harmful_refusal']:.3f}, remove ASR {row['remove']['test']['asr']:.3f}")
    ok = [c for c in curve if c["keep"]["val"]["harmful_refusal"] >= aligned_val["harmful_refusal"] - 0.02]
    r_star = ok[0]["rank"] if ok else None
    at = next((c for c in curve if c["rank"] == r_star), None)
    weights = {
        "aligned": A.name, "base": B.name, "kinds": sub.provenance["kinds"], "n_modules": len(sub.names), "full_rank": full_rank,
        "aligned_val": aligned_val, "aligned_test": aligned_test,
        "base_test": _behaviour(B.model, B.chat, ht + bt, judge),
        "smallest_rank_keep_within_2pts": r_star,
        "at_smallest_rank": None if at is None else {
            "keep_test_harmful_refusal": at["keep"]["test"]["harmful_refusal"],
            "keep_test_harmless_compliance": at["keep"]["test"]["harmless_compliance"],
            "remove_test_asr": at["remove"]["test"]["asr"],
            "mean_energy": at["mean_energy"],
        },
        "curve": curve,
    }

    # 5: geometry
    act = compute_activation_subspace(m, chat, h, b, k=4, layer=rd.layer, model_name=A.name)
    r_geo = r_star or 8
    sg = sub.truncate(r_geo)
    spaces: dict[str, torch.Tensor] = {"refusal direction": rd.direction, f"activation PCA (k={act.k})": act.basis}
    # the refusal layer's own residual writers, and the writers *into* the stream
    # where the direction is read (every layer before it)
    L = rd.layer if rd.layer < m.cfg.n_layers else m.cfg.n_layers - 1
    spaces[f"W_O out, layer {L} (r={r_geo})"] = sg.output_directions(("W_O",), layers=[L])
    spaces[f"W_out out, layer {L} (r={r_geo})"] = sg.output_directions(("W_out",), layers=[L])
    if rd.layer > 0:
        spaces[f"W_O+W_out out, layers < {rd.layer} (r={r_geo})"] = sg.output_directions(("W_O", "W_out"), layers=range(rd.layer))
    spaces.update(extra_spaces or {})
    rep = geometry_report(spaces, provenance={"model": A.name, "refusal_layer": rd.layer, "weight_rank": r_geo})
    if out_html is not None:
        write_geometry_html(rep, out_html)
    geometry = {**rep.to_dict(), "activation_explained_variance": act.explained_variance.tolist(),
                "html": None if out_html is None else str(out_html)}
    return {"model": A.name, "judge": judge.name, "splits": {"direction": "train", "selection": "val", "report": "test"},
            "n_test": {"harmful": len(ht), "harmless": len(bt)}, "refusal_direction": refusal,
            "weight_delta": weights, "geometry": geometry, "seconds": round(time.time() - t0, 1)}


def _matrix_shapes(A, B):
    from safecircuits.models.weights import as_matrix, weight_names

    params = dict(A.model.named_parameters())
    return [tuple(as_matrix(n, params[n]).shape) for n in weight_names(A.model)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/subspace_figures.json"))
    ap.add_argument("--html", type=Path, default=Path("benchmarks/results/subspace_geometry.html"))
    args = ap.parse_args()
    res = run(out_html=args.html)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=str))
    r, w = res["refusal_direction"], res["weight_delta"]
    print(f"refusal direction: layer {r['layer']} pos {r['pos']}; ASR {r['baseline_asr']:.3f} -> {r['ablation_asr']:.3f} "
          f"(harmless KL {r['ablation_harmless_kl']:.4f}); addition x{r['addition_coeff']} ({r['addition_positions']}) "
          f"harmless refusal {r['addition_harmless_refusal']:.3f}; orthogonalised == ablation on {r['orthogonalized_greedy_agreement']:.3f}")
    print(f"weight delta: smallest rank {w['smallest_rank_keep_within_2pts']}: {w['at_smallest_rank']}")
    print(f"wrote {args.out} ({res['seconds']} s)")


if __name__ == "__main__":
    main()
