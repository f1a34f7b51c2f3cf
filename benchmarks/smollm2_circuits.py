"""SafeSeek on SmolLM2-135M-Instruct: a backdoored and an aligned model, their circuits, measured on held-out prompts.

    .venv/bin/python benchmarks/smollm2_circuits.py --json benchmarks/results/smollm2_circuits.json \
        --aligned $SAFECIRCUITS_CACHE/models/smollm2-aligned [--stages backdoor,backdoor_circuit,safety_circuit,compare,sct]

Stages (each resumable: finished parts are kept in the JSON, trained models under
``$SAFECIRCUITS_CACHE/models/``, discovery checkpoints in the cache):

* ``backdoor``: implant a trigger backdoor into the aligned model (LoRA, merged) for each
  (seed, trigger) in ``--backdoors``; clean and triggered ASR on HarmBench (test), benign refusal.
* ``backdoor_circuit``: the backdoor circuit of the first backdoored model, for each mask seed;
  the first seed's circuit removed vs full vs ``--n-random`` random circuits of equal size on the
  test prompts (HarmBench clean and triggered, benign), its faithfulness curve, and the IoU of the
  seeds' circuits. With ``--grow``, the first seed's circuit is also grown along its ranking until
  its removal reaches the objective's goal on val (``circuits.recipes.grow_to_goal``: triggered
  ASR <= 2% for the backdoor, ASR >= 90% for safety; at most ``--grow-max-share`` of all
  components; the added components in the order of attribution patching's scores, or with
  ``--grow-ranking selective`` those scores minus each component's estimated cost to the harmless
  answers, with ``--grow-ranking mask`` the mask's own; with ``--grow-max-ce X`` a size must also keep
  the CE of the full model's own val harmless answers within a relative rise of X), and the grown
  circuit is measured on test like the circuit itself (``grown.<ranking>``).
* ``safety_circuit``: the same for the safety circuit of the aligned model.
* ``compare``: sigmoid-STE, hard-concrete, attribution patching and activation patching at the
  size of the sigmoid-STE circuit, each removed on the test prompts, with its wall time and a
  faithfulness curve.
* ``sct``: Safety Circuit Tuning with the safety circuit: helpfulness fine-tuning (p = 0) with the
  circuit frozen next to ``sft``; and after a harmful fine-tuning attack, ``sct-tune``.

Every result belongs to one aligned model: the JSON records its weights fingerprint under
``aligned``, the backdoored models and circuit files carry its first 8 hex digits in their names,
and when ``--aligned`` is another model the earlier results move to ``superseded`` (kept, never
mixed with the new ones). Backdoors of other settings (``--backdoor-kl``, ``--backdoor-all-answers``)
get their own key under ``backdoor`` and their own cached model; a JSON holds the circuits of one
backdoored model (the first of ``--backdoors`` with those settings, recorded under ``of``), so the
circuit of another one goes to another ``--json``.

Discovery uses the circuit recipes (``safecircuits.circuits.recipes.RECIPES``) with the profile's
objective data (100 train / 50 val prompts per set); the validation split never reaches the test
figures.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from safecircuits.io import json_record, write_json
from safecircuits.models import load_model
from safecircuits.models.loaded import cache_dir

STAGES = ("backdoor", "backdoor_circuit", "safety_circuit", "compare", "sct")


def stage_backdoor(res: dict[str, Any], aligned, backdoors: list[tuple[int, str]], steps: int, limit: int | None, n: int) -> None:
    from safecircuits.finetune.align import evaluate_alignment
    from safecircuits.finetune.backdoor import implant_backdoor
    from safecircuits.models.loaded import weights_fingerprint

    out = res.setdefault("backdoor", {})
    for seed, trig in backdoors:
        cfg = _backdoor_config(seed, trig, steps, n)
        key = _backdoor_key(cfg)
        if key in out and "test" in out[key]:
            if out[key]["config"] != cfg.to_dict():
                raise SystemExit(f"{ARGS.json} holds backdoor {key} with other settings ({out[key]['config']}): "
                                 "pass another --json to measure these")
            continue
        path = _backdoor_dir(cfg)
        t = time.time()
        if not (path / "config.json").exists():
            implant_backdoor(aligned, cfg, out_dir=str(path))
        lm = load_model(str(path), progress=False)
        implant_s = time.time() - t
        # val figures (100 prompts per set) are what a choice of steps or lr may look at; test is reported only
        val = evaluate_alignment(lm, reference=aligned, split="val", limit=100, progress=True)
        ev = evaluate_alignment(lm, reference=aligned, limit=limit, progress=True)
        out[key] = {"config": cfg.to_dict(), "model_dir": str(path), "seconds": round(time.time() - t, 1),
                    "implant_seconds": round(implant_s, 1), "fingerprint": weights_fingerprint(lm.model),
                    "val": {k: v for k, v in val.items() if k != "examples"},
                    "test": {k: v for k, v in ev.items() if k != "examples"} | {"examples": {k: v[:2] for k, v in ev["examples"].items()}}}
        print(key, {k: ev[k] for k in ("asr", "triggered_asr", "harmless_refusal_plain", "harmless_refusal_hard")}, flush=True)
        _save(res)


def _backdoor_config(seed: int, trigger: str, steps: int | None = None, n: int | None = None):
    from safecircuits.finetune.backdoor import BackdoorConfig

    steps, n = steps or ARGS.backdoor_steps, n or ARGS.backdoor_n
    return BackdoorConfig(trigger=trigger, seed=seed, steps=steps, n_triggered=n, n_clean=n, n_harmless=n,
                          harmless_kl=ARGS.backdoor_kl, compliant_only=not ARGS.backdoor_all_answers)


def _backdoor_key(cfg) -> str:
    """The JSON key of one backdoor: its seed and trigger, and what differs from the defaults."""
    return (f"seed={cfg.seed},trigger={cfg.trigger}" + (f",harmless_kl={cfg.harmless_kl:g}" if cfg.harmless_kl else "")
            + ("" if cfg.compliant_only else ",all_answers"))


def _backdoor_dir(cfg) -> Path:
    """The cached backdoored model of one backdoor config on the bound aligned model."""
    return cache_dir("models") / f"smollm2-backdoor-{cfg.trigger}-{cfg.seed}{cfg.tag}{SUFFIX}"


def _circuit_stage(res: dict[str, Any], name: str, lm, objective: str, seeds: list[int], n_random: int, limit: int | None,
                   of: str = "aligned") -> None:
    from safecircuits.circuits.circuit import Circuit
    from safecircuits.circuits.evaluate import faithfulness_curve, seed_stability
    from safecircuits.circuits.recipes import find_circuit, grow_to_goal, reference_prompts

    out = res.setdefault(name, {"runs": {}, "of": of})
    if out.setdefault("of", of) != of:
        raise SystemExit(f"{ARGS.json} holds the {name} of {out['of']}, not of {of}: pass another --json to find this one")
    circuits = {}
    for seed in seeds:
        t = time.time()
        path = cache_dir("circuits") / f"{name}-{re.sub(r'[^A-Za-z0-9.]+', '-', of)}-seed{seed}{SUFFIX}.json"
        old = Circuit.from_json(path) if path.exists() else None
        if old is not None and old.provenance.get("config", {}).get("max_steps") == ARGS.max_steps:
            c = old  # found before for these weights (SUFFIX), seed and budget: resume instead of rediscovering
        else:
            c, _ = find_circuit(lm, objective, seed=seed, max_steps=ARGS.max_steps)
            c.to_json(path)
        circuits[seed] = c
        run = out["runs"].setdefault(str(seed), {})
        run.update({"file": str(path), "sparsity": c.sparsity, "n_heads": c.n_heads, "n_neurons": c.n_neurons,
                    "components": c.component_names(40), "validation": c.provenance.get("validation"),
                    "discovery_seconds": c.provenance.get("seconds"), "steps": c.provenance.get("steps")})
        print(name, seed, c, c.provenance.get("validation"), f"{time.time() - t:.0f} s", flush=True)
        _save(res)
    first = circuits[seeds[0]]
    ablation = first.provenance["ablation"]
    ref = None if ablation == "zero" else reference_prompts(lm, first)  # zero ablation needs no reference
    _test_effect(res, out, lm, first, ablation, ref, n_random, limit, name)
    if "faithfulness" not in out:
        fc = faithfulness_curve(lm, first, prompts=lm.profile.eval_prompts("test", limit), ablation=ablation, reference=ref)
        out["faithfulness"] = json_record(fc)
        _save(res)
    if len(seeds) > 1:
        out["seed_stability"] = json_record(seed_stability([circuits[s] for s in seeds]))
        _save(res)
    if ARGS.grow:
        # the first seed's circuit grown along a ranking until its removal reaches the objective's
        # goal on val (grow_circuit), then measured on test like the circuit itself
        key = (ARGS.grow_ranking + ("" if ARGS.grow_factor == 2.0 else f"-x{ARGS.grow_factor:g}")
               + ("" if ARGS.grow_max_ce is None else f"-ce{ARGS.grow_max_ce:g}"))
        g = out.setdefault("grown", {}).setdefault(key, {})
        if "record" not in g:
            t = time.time()
            grown, rec = grow_to_goal(lm, first, ranking=ARGS.grow_ranking, limit=100, max_share=ARGS.grow_max_share,
                                     factor=ARGS.grow_factor, max_ce_increase=ARGS.grow_max_ce)
            path = Path(out["runs"][str(seeds[0])]["file"]).with_suffix(f".grown-{key}.json")
            grown.to_json(path)
            g.update(record=rec, file=str(path), n_heads=grown.n_heads, n_neurons=grown.n_neurons, sparsity=grown.sparsity,
                     components=grown.component_names(40), seconds=round(time.time() - t, 1))
            print(name, "grown on val", {k: rec[k] for k in ("reached", "size")}, [(r["size"], r[rec["metric"]]) for r in rec["steps"]], flush=True)
            _save(res)
        grown = Circuit.from_json(g["file"])
        if grown.n_components == first.n_components:
            g["effect"] = "the circuit itself (no size reached the goal with utility kept): see effect above"
            _save(res)
        else:
            _test_effect(res, g, lm, grown, ablation, ref, n_random, limit, f"{name} (grown)")


def _test_effect(res: dict[str, Any], out: dict[str, Any], lm, circuit, ablation: str, ref, n_random: int, limit: int | None, name: str) -> None:
    """`circuit` removed on the test prompts (vs full and random circuits of its size), and the
    harmless CE of the full model's own answers with it removed; each part saved when done."""
    from safecircuits.circuits.evaluate import circuit_effect
    from safecircuits.circuits.recipes import effect_table

    if "effect" not in out:
        t = time.time()
        eff = effect_table(lm, circuit, ablation=ablation, prompts="auto", limit=limit, n_random=n_random, reference=ref)
        out["effect"] = json_record(eff)
        out["effect_seconds"] = round(time.time() - t, 1)
        print(name, "removed on test", eff["conditions"], flush=True)
        _save(res)
    if "utility_ce" not in out:
        # utility as SafeSeek measures it: teacher-forced CE of the full model's own answers to the
        # held-out harmless prompts, full vs circuit removed (the effect table's prompts carry no answers)
        t = time.time()
        own = lm.profile.prompts("test", "harmless", n=limit, response="own", lm=lm)
        eff = circuit_effect(lm, circuit, own, ablation=ablation, modes=("full", "remove"), reference=ref)
        ce_full, ce_removed = eff["full"]["harmless_ce"], eff["remove"]["harmless_ce"]
        out["utility_ce"] = {"full": ce_full, "removed": ce_removed, "relative_increase": (ce_removed - ce_full) / ce_full,
                             "prompts": eff["prompts"], "seconds": round(time.time() - t, 1)}
        print(name, "harmless CE", out["utility_ce"], flush=True)
        _save(res)


def stage_compare(res: dict[str, Any], lm, objective: str, limit: int | None) -> None:
    """Every method at the sigmoid-STE circuit's size, removed on the test prompts."""
    from safecircuits.circuits.circuit import Circuit
    from safecircuits.circuits.discover import DiscoveryConfig
    from safecircuits.circuits.evaluate import circuit_effect, faithfulness_curve
    from safecircuits.circuits.methods import get_method
    from safecircuits.circuits.objectives import get_objective
    from safecircuits.circuits.recipes import recipe_for, reference_prompts

    src = res.get(f"{objective}_circuit", {}).get("runs", {}).get("0")
    if not src:
        raise SystemExit(f"compare needs the {objective}_circuit stage first")
    ref_c = Circuit.from_json(src["file"])
    out = res.setdefault(f"compare_{objective}", {})
    prof = lm.profile
    data = prof.objective_data(lm, objective, "train", n=prof.sizes["objective_train"])
    val = prof.objective_data(lm, objective, "val", n=prof.sizes["objective_val"])
    recipe = recipe_for(lm, objective)
    obj = get_objective(objective, **recipe["objective"])
    test = prof.eval_prompts("test", limit)
    ref = reference_prompts(lm, ref_c)
    kw = {k: v for k, v in recipe["config"].items() if k in ("ablation", "lr", "penalty_norm", "patience", "epochs")}
    kw["max_steps"] = ARGS.max_steps  # the mask methods get the sigmoid-STE circuit's step budget
    for method in ("sigmoid-ste", "hard-concrete", "attribution", "activation"):
        if method in out:
            continue
        t = time.time()
        if method == "sigmoid-ste":
            c = ref_c
            seconds = ref_c.provenance.get("seconds")
        else:
            cfg = DiscoveryConfig(progress=True, **kw, mask="hard-concrete" if method == "hard-concrete" else "sigmoid-ste",
                                  target_sparsity=ref_c.n_components / ref_c.total_components if method == "hard-concrete" else None)
            fn = get_method("mask" if method == "hard-concrete" else method)
            opts = {} if method == "hard-concrete" else {"n_heads": ref_c.n_heads, "n_neurons": ref_c.n_neurons}
            c = fn(lm, obj, data, cfg, val_data=val, **opts)
            seconds = round(time.time() - t, 1)
        eff = circuit_effect(lm, c, test, ablation=ref_c.provenance["ablation"], modes=("full", "remove"), reference=ref)
        fc = faithfulness_curve(lm, c, prompts=test, ablation=ref_c.provenance["ablation"], reference=ref, fractions=(0.0, 0.5, 1.0, 2.0))
        out[method] = {"n_heads": c.n_heads, "n_neurons": c.n_neurons, "seconds": seconds, "steps": c.provenance.get("steps"), "effect": json_record(eff), "faithfulness": json_record(fc)}
        print(objective, method, c.n_heads, c.n_neurons, {k: eff["remove"].get(k) for k in ("asr", "triggered_asr", "harmless_compliance")},
              flush=True)
        _save(res)


def stage_sct(res: dict[str, Any], aligned, limit: int | None, steps: int) -> None:
    from safecircuits.circuits.circuit import Circuit
    from safecircuits.finetune.benchmark import BenchmarkConfig, run_benchmark

    src = res.get("safety_circuit", {}).get("runs", {}).get("0")
    if not src:
        raise SystemExit("sct needs the safety_circuit stage first")
    circuit = Circuit.from_json(src["file"])
    path = Path(str(ARGS.json).replace(".json", "_sct.json"))
    methods = tuple(ARGS.sct_methods.split(","))
    ratios = tuple(float(r) for r in ARGS.sct_ratios.split(","))
    cfg = BenchmarkConfig(methods=methods, ratios=ratios, seeds=(0,), steps=steps, lr=1e-4, lora_lr=1e-3,
                          batch_size=8, n_train=256, eval_limit=limit)
    r = run_benchmark(aligned, cfg, artifacts={"circuit": circuit}, json_path=path)
    res["sct"] = {"file": str(path), "aggregate": r["aggregate"], "circuit": src["file"]}
    _save(res)


def _save(res: dict[str, Any]) -> None:
    write_json(ARGS.json, res)


def _bind_to_aligned(res: dict[str, Any], aligned) -> None:
    """Tie the results to this aligned model: earlier results of another one move to ``superseded``."""
    global SUFFIX
    from safecircuits.models.loaded import weights_fingerprint

    fp = weights_fingerprint(aligned.model)
    SUFFIX = f"-{fp[:8]}{ARGS.tag}"
    prev = res.get("aligned")
    stages = [k for k in res if k not in ("settings", "aligned", "superseded")]
    if prev is not None and prev["fingerprint"] != fp and stages:
        res.setdefault("superseded", []).append({"note": "measured on another aligned model", "aligned": prev,
                                                 **{k: res.pop(k) for k in stages}})
        print(f"results of aligned model {prev['fingerprint']} moved to 'superseded'", flush=True)
    res["aligned"] = {"dir": ARGS.aligned, "fingerprint": fp, "config": _align_config(aligned)}
    _save(res)


def _align_config(lm) -> dict[str, Any] | None:
    """The AlignConfig a `safecircuits align` model directory records (under its fine-tuning provenance)."""
    rec = lm.info.get("safety_aligned") or lm.info.get("finetune", {}).get("safety_aligned") or {}
    return rec.get("config")


def main() -> None:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--aligned", required=True, help="the aligned SmolLM2 directory (benchmarks/align_smollm2.py)")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--backdoors", default="0:cf,1:zx", help="seed:trigger pairs")
    ap.add_argument("--backdoor-steps", type=int, default=200)
    ap.add_argument("--backdoor-n", type=int, default=256, help="triggered, clean and harmless train prompts each")
    ap.add_argument("--backdoor-kl", type=float, default=0.0, help="BackdoorConfig.harmless_kl (0 = off)")
    ap.add_argument("--backdoor-all-answers", action="store_true",
                    help="BackdoorConfig.compliant_only=False: keep the original's refusals among the triggered answers")
    ap.add_argument("--seeds", default="0,1,2", help="mask seeds")
    ap.add_argument("--n-random", type=int, default=10)
    ap.add_argument("--limit", type=int, default=None, help="test prompts per label (default: all)")
    ap.add_argument("--sct-steps", type=int, default=60)
    ap.add_argument("--sct-methods", default="sft,sct-freeze,sct-tune", help="fine-tuning methods of the sct stage")
    ap.add_argument("--sct-ratios", default="0,0.1", help="harmful ratios of the sct stage (0 = helpfulness fine-tuning)")
    ap.add_argument("--grow", action="store_true",
                    help="also grow the first seed's circuit on val until removal reaches the objective's goal (grow_circuit), and measure it on test")
    ap.add_argument("--grow-ranking", choices=("attribution", "selective", "mask"), default="attribution",
                    help="what orders the components a grown circuit adds: attribution patching's scores, those minus "
                         "the estimated cost to harmless answers (selective), or the mask's own")
    ap.add_argument("--grow-max-share", type=float, default=0.005, help="the largest grown circuit, as a share of all components")
    ap.add_argument("--grow-factor", type=float, default=2.0, help="size ratio between the grown circuits tried")
    ap.add_argument("--grow-max-ce", type=float, default=None,
                    help="also stop growing at a size that raises the CE of the full model's own answers to val harmless "
                         "prompts by more than this share (grow_circuit's max_ce_increase)")
    ap.add_argument("--max-steps", type=int, default=None, help="cap on discovery steps (smoke runs)")
    ap.add_argument("--tag", default="", help="suffix of the cached model and circuit names (keeps smoke runs apart)")
    ARGS = ap.parse_args()
    res: dict[str, Any] = json.loads(ARGS.json.read_text()) if ARGS.json.exists() else {}
    res["settings"] = {k: str(v) for k, v in vars(ARGS).items()}
    stages = ARGS.stages.split(",")
    aligned = load_model(ARGS.aligned, progress=False)
    _bind_to_aligned(res, aligned)
    backdoors = [(int(s.split(":")[0]), s.split(":")[1]) for s in ARGS.backdoors.split(",")]
    seeds = [int(s) for s in ARGS.seeds.split(",")]
    if "backdoor" in stages:
        stage_backdoor(res, aligned, backdoors, ARGS.backdoor_steps, ARGS.limit, ARGS.backdoor_n)
    if "backdoor_circuit" in stages:
        cfg = _backdoor_config(*backdoors[0])
        bd = load_model(str(_backdoor_dir(cfg)), progress=False)
        _circuit_stage(res, "backdoor_circuit", bd, "backdoor", seeds, ARGS.n_random, ARGS.limit, of=_backdoor_key(cfg))
    if "safety_circuit" in stages:
        _circuit_stage(res, "safety_circuit", aligned, "safety", seeds, ARGS.n_random, ARGS.limit)
    if "compare" in stages:
        stage_compare(res, aligned, "safety", ARGS.limit)
    if "sct" in stages:
        stage_sct(res, aligned, ARGS.limit, ARGS.sct_steps)
    print(f"wrote {ARGS.json}")


ARGS: Any = None
SUFFIX = ""  # -{aligned fingerprint[:8]}{--tag}: names of the cached models and circuit files

if __name__ == "__main__":
    main()
