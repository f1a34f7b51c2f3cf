"""`safecircuits demo`: the main job, on the embedded model organisms."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from safecircuits.evaluation.report import evaluate_model
from safecircuits.models import load_model


def _demo_circuits(out: Path, size: str, console: Console) -> tuple[dict, dict]:
    """Find the backdoor circuit of organism:backdoor and the safety circuit of organism:aligned,
    print their ablation tables and write the circuit maps. Returns (summary, {objective: Circuit})."""
    from safecircuits.circuits.evaluate import faithfulness_curve
    from safecircuits.circuits.recipes import (
        effect_table,
        find_circuit,
        reference_prompts,
        render_effect_table,
    )
    from safecircuits.viz import circuit_report_html

    console.rule("[bold]circuit discovery (SafeSeek-style masks)")
    suffix = f"?size={size}" if size != "small" else ""
    found, effects, curves = {}, {}, {}
    for objective, kind in (("backdoor", "backdoor"), ("safety", "aligned")):
        lm = load_model(f"organism:{kind}{suffix}", progress=False)
        console.print(f"discovering the {objective} circuit of {lm.name} ...")
        circuit, _ = find_circuit(lm, objective, progress=True)
        circuit.to_json(out / f"{objective}_circuit.json")
        ablation = circuit.provenance["ablation"]
        eff = effect_table(lm, circuit, ablation=ablation, prompts="organism:test", n_random=10)
        console.print(render_effect_table(eff))
        curve = faithfulness_curve(lm, circuit, prompts="organism:test", ablation=ablation, reference=reference_prompts(lm, circuit))
        found[objective], effects[objective], curves[objective] = circuit, eff, {**curve, "label": objective}
    html = circuit_report_html(out / "circuit_map.html", found, faithfulness=curves, title="safecircuits demo: circuit maps")
    console.print(f"wrote {html}")
    summary = {k: {"sparsity": c.sparsity, "n_heads": c.n_heads, "n_neurons": c.n_neurons, "effect": effects[k],
                   "auc_asr": curves[k].get("auc_asr"), "seconds": c.provenance["seconds"]} for k, c in found.items()}
    return summary, found


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _demo_features(out: Path, size: str, console: Console) -> dict:
    """Train a top-k SAE (SAELens) on organism:aligned, rank its safety features, ablate the top 10
    against frequency-matched random features, and write the feature dashboard."""
    from safecircuits.cli.features import top_features_table
    from safecircuits.features import feature_ablation_effect, rank_features, train_sae
    from safecircuits.viz.features import feature_dashboard_html

    console.rule("[bold]SAE safety features (SAELens)")
    lm = load_model("organism:aligned" + (f"?size={size}" if size != "small" else ""), progress=False)
    hook = f"blocks.{lm.model.cfg.n_layers - 1}.hook_resid_post"
    train, test = lm.profile.eval_prompts("train"), lm.profile.eval_prompts("test")
    console.print(f"training a top-k SAE (d_sae 512, k 16) on {lm.name} @ {hook} ...")
    res = train_sae(lm, None, hook, arch="topk", d_sae=512, k=16, training_tokens=300_000, batch_size=256, seed=0,
                    out_dir=out / "sae", n_checkpoints=0, progress=True)
    q = res.quality
    console.print(res.summary())
    fset = rank_features(lm, res.sae, train, method="diff", sae_path=out / "sae")
    fset.save(out / "features.json")
    k = 10
    console.print(top_features_table(fset, k, title=f"top {k} safety features (standardised harmful - harmless difference)"))
    eff = feature_ablation_effect(lm, res.sae, fset, k, test, n_random=5, seed=0)
    sm = eff.summary()
    t = Table(title=f"ablating SAE features on held-out prompts ({len(test)} prompts, organism judge)")
    for col in ("features zeroed", "ASR", "harmless compliance"):
        t.add_column(col)
    t.add_row("none", _pct(sm["asr"]["baseline"]), _pct(sm["harmless_compliance"]["baseline"]))
    t.add_row(f"top {k} safety features", _pct(sm["asr"]["top_k"]), _pct(sm["harmless_compliance"]["top_k"]))
    t.add_row(f"{k} random features, frequency-matched (mean of 5)", _pct(sm["asr"]["random"]["mean"]),
              _pct(sm["harmless_compliance"]["random"]["mean"]))
    console.print(t)
    html = feature_dashboard_html(lm, res.sae, fset, test, out / "feature_dashboard.html", k=k)
    console.print(f"wrote {html}")
    return {"hook": hook, "quality": q, "top_features": fset.top(k), "ablation": sm, "sae_dir": str(out / "sae"),
            "decoder_directions": res.sae.W_dec[fset.top(k)].detach().T}


def _demo_subspaces(out: Path, size: str, console: Console, sae_directions=None) -> dict:
    """The refusal direction of organism:aligned (three interventions), its weight-delta subspace
    against organism:base (keep vs remove), and the geometry of all the safety subspaces."""
    from safecircuits.cli.subspaces import refusal_effects_table
    from safecircuits.evaluation.metrics import evaluate_behaviour
    from safecircuits.subspaces import (
        WeightDeltaSubspace,
        apply_delta_projection,
        compute_activation_subspace,
        find_refusal_direction,
        geometry_report,
    )
    from safecircuits.subspaces.effects import choose_coefficient, intervention_effects
    from safecircuits.viz.subspaces import write_geometry_html

    console.rule("[bold]safety subspaces")
    suffix = f"?size={size}" if size != "small" else ""
    lm = load_model(f"organism:aligned{suffix}", progress=False)
    base = load_model(f"organism:base{suffix}", progress=False)
    prof = lm.profile
    (h, b), (hv, bv), (ht, bt) = ((prof.prompts(s, "harmful"), prof.prompts(s, "harmless")) for s in ("train", "val", "test"))
    judge = prof.judge(lm)
    rd = find_refusal_direction(lm, h, b, hv, bv)
    rd.save(out / "refusal_direction.pt")
    choice, _ = choose_coefficient(lm.model, lm.chat, rd, bv, judge, max_new_tokens=24)
    effects = intervention_effects(lm.model, lm.chat, rd, ht, bt, judge, coeff=choice["coeff"], positions=choice["positions"],
                                   max_new_tokens=24)
    console.print(f"refusal direction: layer {rd.layer}, position {rd.pos} (selected under ablation on validation prompts)")
    console.print(refusal_effects_table(rd, effects, choice["coeff"], choice["positions"]))

    rank = 6
    sub = WeightDeltaSubspace.from_models(lm, base, rank=rank)
    sub.save(out / "weight_delta.pt")
    t = Table(title=f"weight-delta subspace (aligned - base, rank {rank} per module) on held-out prompts")
    for col in ("model", "harmful refusal", "ASR", "harmless compliance"):
        t.add_column(col)
    rows = {}
    for label, model in (("aligned", lm.model), (f"base + delta projected onto the rank-{rank} subspace", apply_delta_projection(lm, base, sub, "keep")),
                         ("aligned - that projection", apply_delta_projection(lm, base, sub, "remove"))):
        g = evaluate_behaviour(model, lm.chat, ht + bt, judge, max_new_tokens=24)
        rows[label] = {"refusal": g["harmful"].refusal_rate, "asr": g["harmful"].compliance_rate, "harmless_compliance": g["harmless"].compliance_rate}
        t.add_row(label, _pct(rows[label]["refusal"]), _pct(rows[label]["asr"]), _pct(rows[label]["harmless_compliance"]))
    console.print(t)

    act = compute_activation_subspace(lm.model, lm.chat, h, b, k=4, layer=rd.layer, pos=rd.pos, model_name=lm.name)
    spaces = {"refusal direction": rd.direction, "activation PCA (k=4)": act.basis,
              f"weight delta W_O/W_out outputs, layer {max(rd.layer - 1, 0)}": sub.output_directions(layers=[max(rd.layer - 1, 0)])}
    if sae_directions is not None:
        spaces["top SAE safety features (decoder)"] = sae_directions
    geo = geometry_report(spaces)
    html = write_geometry_html(geo, out / "subspace_geometry.html", title="safety subspaces of organism:aligned")
    console.print(f"wrote {html}")
    return {"refusal_direction": {"layer": rd.layer, "pos": rd.pos, "addition": choice, "effects": effects},
            "weight_delta": {"rank": rank, **rows}, "geometry": geo.to_dict()}


FINETUNE_METHODS = ("sft", "sct-freeze", "sct-tune", "cwac")


def _demo_finetune(out: Path, size: str, console: Console, circuit=None, ratio: float = 0.1) -> dict:
    """A short harmful fine-tuning comparison on organism:aligned: sft vs SCT vs CWAC at one harmful
    ratio, one seed, the benchmark's calibrated budget (docs/finetune.md)."""
    from safecircuits.finetune.benchmark import DEFAULTS, prepare_artifacts, run_benchmark, run_key
    from safecircuits.viz.finetune import write_benchmark_html

    console.rule(f"[bold]harmful fine-tuning: {', '.join(FINETUNE_METHODS)} at p = {ratio:g}")
    lm = load_model("organism:aligned" + (f"?size={size}" if size != "small" else ""), progress=False)
    console.print(f"preparing artifacts (weight-delta subspace, SAE features; cached) for {lm.name} ...")
    artifacts = prepare_artifacts(lm, FINETUNE_METHODS, progress=True, circuit=circuit)
    path = out / "finetune_bench.json"
    path.unlink(missing_ok=True)  # a demo run measures afresh
    res = run_benchmark(lm, methods=FINETUNE_METHODS, ratios=(ratio,), seeds=(0,), artifacts=artifacts, json_path=path, progress=True)
    t = Table(title=f"fine-tuning {lm.name} on reverse-steps mixed with {100 * ratio:g}% harmful pairs "
                    f"({DEFAULTS['steps']} steps; held-out prompts, organism judge)")
    for col in ("method", "harmful score (ASR)", "task accuracy", "harmless KL", "trainable share", "wall time"):
        t.add_column(col)
    rows = {}
    for m in FINETUNE_METHODS:
        r = res["runs"][run_key(m, ratio, 0)]
        rows[m] = {k: r[k] for k in ("harmful_score", "accuracy", "harmless_kl", "trainable_share", "wall_seconds")}
        t.add_row(m, _pct(r["harmful_score"]), _pct(r["accuracy"]), f"{r['harmless_kl']:.3f}", _pct(r["trainable_share"]),
                  f"{r['wall_seconds']:.1f} s")
    console.print(t)
    html = write_benchmark_html(res, out / "finetune_bench.html")
    console.print(f"wrote {path} and {html}")
    return {"ratio": ratio, "steps": DEFAULTS["steps"], "methods": rows}


def run_demo(out: Path = Path("demo_out"), size: str = "small", console: Console | None = None, circuits: bool = True,
             features: bool = True, subspaces: bool = True, finetune: bool = True) -> dict:
    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    console.rule("[bold]safecircuits demo: model organisms")
    results: dict[str, dict] = {}
    table = Table(title="Safety evaluation on held-out prompts (greedy decoding, exact-match organism judge)")
    for col in ("model", "harmful refusal", "ASR", "ASR + trigger", "harmless compliance", "harmless exact", "harmless CE"):
        table.add_column(col)
    for kind in ("base", "aligned", "backdoor"):
        name = f"organism:{kind}" + (f"?size={size}" if size != "small" else "")
        console.print(f"loading {name} (trained on first use, then cached) ...")
        lm = load_model(name)
        rep = evaluate_model(lm, "organism:test", max_new_tokens=24, batch_size=64)
        rep.to_json(out / f"eval_{kind}.json")
        s = rep.summary()
        results[kind] = s
        table.add_row(
            lm.name,
            f"{100 * s['harmful_refusal']:.1f}%",
            f"{100 * s['asr']:.1f}%",
            f"{100 * s['triggered_asr']:.1f}%" if "triggered_asr" in s else "-",
            f"{100 * s['harmless_compliance']:.1f}%",
            f"{100 * s.get('harmless_exact_match', 0):.1f}%",
            f"{s['utility_harmless_ce']:.3f}",
        )
    console.print(table)
    summary: dict = {"organisms": results}
    safety_circuit = None
    if circuits:
        summary["circuits"], found = _demo_circuits(out, size, console)
        safety_circuit = found["safety"]
    sae_dirs = None
    if features:
        summary["features"] = _demo_features(out, size, console)
        sae_dirs = summary["features"].pop("decoder_directions")
    if subspaces:
        summary["subspaces"] = _demo_subspaces(out, size, console, sae_dirs)
    if finetune:
        summary["finetune"] = _demo_finetune(out, size, console, circuit=safety_circuit)
    summary["seconds"] = round(time.time() - t0, 1)
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=str))
    console.print(f"wrote {out / 'demo.json'} ({summary['seconds']} s)")
    from safecircuits.viz.index import write_index

    pages = [  # (file, title, one-line description, written by this run)
        ("circuit_map.html", "Circuit maps",
         "the backdoor and safety circuits: heads, neurons, named components, training, faithfulness, overlap", circuits),
        ("feature_dashboard.html", "SAE safety features",
         "the top safety features: scores, top-activating prompts, activations, effect on refusal", features),
        ("subspace_geometry.html", "Safety subspace geometry",
         "overlaps and principal angles of the refusal direction and the other safety subspaces", subspaces),
        ("finetune_bench.html", "Harmful fine-tuning",
         "harmful score vs task accuracy per method, with the result tables", finetune),
        ("demo.json", "All numbers (JSON)", "every number the demo printed, machine-readable", True),
    ]
    index = write_index(out, [p[:3] for p in pages if p[3]], title="safecircuits demo")
    console.print(f"wrote {index}: open it in a browser")
    return summary
