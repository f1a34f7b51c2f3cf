"""Why is the organism's safety circuit not sparse? Variants of the objective, the mask methods and
the patching baselines on aligned organisms, each with its faithfulness curve.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/safety_sparsity.py \
        --json benchmarks/results/safety_sparsity.json [--seeds 0,1]

For every circuit: its size, its effect on test (ASR with it removed, harmless compliance), and
the faithfulness curve along its own score ranking (members first) on val and test; the smallest
prefix reaching ASR >= 90% is chosen on **val** and reported on **test**.

Experiments (``--experiments``; the recipe's settings unless stated):

* ``recipe``: the safety recipe (sigmoid-STE, decision tokens 3, lambda 1, zero ablation,
  layer-mean penalty, harmless utility term);
* ``no_utility``: ``w_utility = 0`` (SafeSeek's objective);
* ``no_sufficiency``: ``w_refuse = 0``: no "the circuit alone refuses" term (necessity only);
* ``component_penalty``: ``penalty_norm = "component"``;
* ``lambda3`` / ``lambda10``: a stronger sparsity penalty;
* ``mean_ablation``: mean instead of zero ablation;
* ``hard_concrete``: hard-concrete masks, discretised to the recipe circuit's share;
* ``attribution`` / ``activation``: attribution patching and activation patching (every head and
  neuron ablated alone: exact scores), at the recipe circuit's head and neuron counts.

Resumable: each (seed, experiment) is written to the JSON as it finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import traceback
from pathlib import Path
from typing import Any

import torch

FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
EXPERIMENTS = ("recipe", "no_utility", "no_sufficiency", "component_penalty", "lambda3", "lambda10", "mean_ablation", "hard_concrete",
               "attribution", "activation")
def _plain(x: Any) -> dict[str, Any]:
    """A result as a plain dict (typed circuit results have ``to_dict``)."""
    return x.to_dict() if hasattr(x, "to_dict") else dict(x)


FORMAT = "safecircuits-safety-sparsity/1"


def _discover(lm, data, val, objective_kw: dict[str, Any], config_kw: dict[str, Any]):
    from safecircuits.circuits.discover import DiscoveryConfig, discover_circuit
    from safecircuits.circuits.objectives import get_objective
    from safecircuits.circuits.recipes import RECIPES

    r = RECIPES["safety"]
    obj = get_objective("safety", **{**r["objective"], **objective_kw})
    cfg = DiscoveryConfig(progress=False, **{**r["config"], **config_kw})
    keys = set(obj.data_keys)
    return discover_circuit(lm, obj, {k: v for k, v in data.items() if k in keys}, cfg,
                            val_data={k: v for k, v in val.items() if k in keys})


def _measure(lm, c, ablation: str) -> dict[str, Any]:
    from safecircuits.circuits.evaluate import circuit_effect, faithfulness_curve
    from safecircuits.circuits.objectives import get_objective

    data = lm.profile.objective_data(lm, "safety", "train")
    ref = get_objective("safety").reference_set(data)
    test, val = lm.profile.eval_prompts("test"), lm.profile.eval_prompts("val")
    eff = circuit_effect(lm, c, test, ablation=ablation, modes=("full", "remove"), reference=ref)
    curves = {s: faithfulness_curve(lm, c, FRACTIONS, prompts=ps, ablation=ablation, reference=ref) for s, ps in (("val", val), ("test", test))}
    pick = None
    for f, size, a in zip(curves["val"]["fractions"], curves["val"]["sizes"], curves["val"]["asr"], strict=True):
        if size > 0 and a is not None and a >= 0.9:
            i = curves["test"]["fractions"].index(f)
            pick = {"fraction": f, "size": size, "share": size / c.total_components, "n_heads": curves["test"]["n_heads"][i],
                    "n_neurons": curves["test"]["n_neurons"][i], "test_asr": curves["test"]["asr"][i],
                    "test_harmless_compliance": curves["test"]["utility"][i]}
            break
    return {"n_heads": c.n_heads, "n_neurons": c.n_neurons, "n_components": c.n_components, "share": c.n_components / c.total_components,
            "neurons_per_layer": c.neurons.sum(1).tolist(), "heads_per_layer": c.heads.sum(1).tolist(), "ablation": ablation,
            "full": eff["full"], "removed": eff["remove"],
            "faithfulness": {s: {k: v for k, v in _plain(cv).items() if k != "circuit"} for s, cv in curves.items()},
            "smallest_asr90_val": pick, "components": c.components()[:400]}


def run_experiment(lm, name: str, recipe_circuit=None) -> dict[str, Any]:
    from safecircuits.circuits.baselines import activation_patching, attribution_patching
    from safecircuits.circuits.discover import DiscoveryConfig
    from safecircuits.circuits.objectives import get_objective
    from safecircuits.circuits.recipes import RECIPES

    data = lm.profile.objective_data(lm, "safety", "train")
    val = lm.profile.objective_data(lm, "safety", "val")
    r = RECIPES["safety"]
    ablation = r["config"]["ablation"]
    t0 = time.time()
    if name == "recipe":
        c = _discover(lm, data, val, {}, {})
    elif name == "no_utility":
        c = _discover(lm, data, val, {"w_utility": 0.0}, {})
    elif name == "no_sufficiency":
        c = _discover(lm, data, val, {"w_refuse": 0.0}, {})
    elif name == "component_penalty":
        c = _discover(lm, data, val, {}, {"penalty_norm": "component"})
    elif name == "lambda3":
        c = _discover(lm, data, val, {"lambda_sparsity": 3.0}, {})
    elif name == "lambda10":
        c = _discover(lm, data, val, {"lambda_sparsity": 10.0}, {})
    elif name == "mean_ablation":
        ablation = "mean"
        c = _discover(lm, data, val, {}, {"ablation": "mean"})
    elif name == "hard_concrete":
        share = recipe_circuit.n_components / recipe_circuit.total_components
        c = _discover(lm, data, val, {}, {"mask": "hard-concrete", "target_sparsity": share})
    elif name in ("attribution", "activation"):
        cfg = DiscoveryConfig(progress=False, ablation=ablation, penalty_norm=r["config"]["penalty_norm"])
        obj = get_objective("safety", **r["objective"])
        kw = {"n_heads": recipe_circuit.n_heads, "n_neurons": recipe_circuit.n_neurons}
        if name == "attribution":
            c = attribution_patching(lm, obj, data, cfg, **kw)
        else:
            c = activation_patching(lm, obj, data, cfg, neuron_method="exact", **kw)
    else:
        raise SystemExit(f"unknown experiment {name!r}: use some of {', '.join(EXPERIMENTS)}")
    secs = time.time() - t0
    out = _measure(lm, c, ablation)
    out["discovery_seconds"] = round(secs, 1)
    out["circuit"] = c
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/safety_sparsity.json"))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--experiments", default=",".join(EXPERIMENTS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from safecircuits.circuits.circuit import Circuit
    from safecircuits.models import cache_dir, load_model

    d = json.loads(args.json.read_text()) if args.json.exists() else {"format": FORMAT, "runs": {}}
    d["machine"] = {"platform": platform.platform(), "torch": torch.__version__, "threads": 1}
    d["fractions"] = list(FRACTIONS)
    store = cache_dir("circuits") / "safety_sparsity"
    store.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        name = f"organism:aligned?seed={seed}"
        lm = load_model(name, progress=False)
        runs = d["runs"].setdefault(name, {})
        recipe_path = store / f"aligned-{seed}-recipe.json"
        for exp in args.experiments.split(","):
            if exp in runs and "error" not in runs[exp]:
                continue
            print(f"[{time.strftime('%H:%M:%S')}] seed {seed}: {exp} ...", flush=True)
            try:
                recipe = Circuit.from_json(recipe_path) if recipe_path.exists() else None
                if exp in ("hard_concrete", "attribution", "activation") and recipe is None:
                    raise RuntimeError("run the recipe experiment first (it fixes the size)")
                res = run_experiment(lm, exp, recipe)
                c = res.pop("circuit")
                c.to_json(store / f"aligned-{seed}-{exp}.json")
            except Exception as e:
                res = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
                print(res["traceback"], flush=True)
            runs[exp] = res
            tmp = args.json.with_name(args.json.name + ".tmp")
            args.json.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(d, indent=1, default=str))
            os.replace(tmp, args.json)
            s = res.get("smallest_asr90_val")
            print(f"  {exp}: {res.get('n_heads')} heads + {res.get('n_neurons')} neurons ({100 * res.get('share', 0):.1f}%), "
                  f"ASR removed {res.get('removed', {}).get('asr')}, smallest ASR>=90% prefix {s}", flush=True)


if __name__ == "__main__":
    main()
