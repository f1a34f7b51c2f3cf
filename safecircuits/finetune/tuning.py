"""Validation tuning of the benchmark's methods (``safecircuits bench tune``).

The procedure, the same for every method:

1. run a stated grid of the method's hyperparameters (and learning rate) on the **val** split,
   at the tuning ratios (default p = 0.1 and 0.3) and seeds, with the benchmark's budget (the same
   steps, batch size and examples for every method and grid point);
2. run ``lora`` at its default setting in the same call (or take its val accuracy from the grid
   file, ``"reference_accuracy"``): the reference accuracy;
3. among the grid points whose mean val accuracy is within ``tolerance`` (3 points) of the
   reference, pick the one with the lowest mean val harmful score (ties: higher accuracy, then
   grid order). When no point is within the tolerance, the most accurate one is picked and the
   choice is marked ``qualified: false``;
4. write the chosen hyperparameters (learning rate resolved to an absolute value) as a config
   file ``bench finetune --config`` takes.

Grid points are benchmark method labels ``METHOD@i`` with ``method_hparams`` entries
``{"method": METHOD, **point}``, so tuning is one benchmark call: resumable, and it runs on the
Ray executor too. :data:`DEFAULT_GRIDS` holds :data:`GRID_POINTS` points for every method.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safecircuits.errors import InputError
from safecircuits.finetune.benchmark import (
    CONFIG_FORMAT,
    LOOP_KEYS,
    BenchmarkConfig,
    run_benchmark,
)
from safecircuits.io import read_json, write_json
from safecircuits.models.loaded import LoadedModel

__all__ = ["DEFAULT_GRIDS", "GRID_POINTS", "REFERENCE", "TOLERANCE", "TUNE_RATIOS", "choose", "grid_label", "read_grid", "tune_table",
           "tune", "tune_config", "tuned_config"]

TUNE_RATIOS: tuple[float, ...] = (0.1, 0.3)
TOLERANCE = 0.03  # 3 accuracy points
REFERENCE = "lora"
GRID_POINTS = 6

# Six points per method: the same budget for every method. ``lr_scale`` multiplies the benchmark's
# lr (full fine-tuning) or lora_lr (LoRA mode), so a grid fits any model's calibrated budget; PACT's
# grid starts from its paper's absolute settings.
DEFAULT_GRIDS: dict[str, list[dict[str, Any]]] = {
    "sft": [{"lr_scale": s} for s in (0.1, 0.3, 0.5, 1.0, 2.0, 3.0)],
    "lora": [{"lora_rank": r, "lr_scale": s} for r in (8, 16) for s in (0.3, 1.0, 3.0)],
    "sct-freeze": [{"lr_scale": s} for s in (0.1, 0.3, 0.5, 1.0, 2.0, 3.0)],
    "sct-tune": [{"lr_scale": s} for s in (0.5, 1.0, 2.0, 3.0, 5.0, 10.0)],
    # feature anchor from weak to the organism's default, both update bases, full and LoRA training
    "cwac": [
        {"mode": "full", "basis": "activations", "lam": 50.0},
        {"mode": "full", "basis": "activations", "lam": 20.0},
        {"mode": "full", "basis": "activations", "lam": 5.0},
        {"mode": "full", "basis": "weights", "lam": 20.0},
        {"mode": "lora", "basis": "activations", "lam": 20.0},
        {"mode": "lora", "basis": "weights", "lam": 20.0},
    ],
    "cwac-weights-only": [
        {"mode": "full", "basis": "activations"},
        {"mode": "full", "basis": "weights"},
        {"mode": "lora", "basis": "activations"},
        {"mode": "lora", "basis": "weights"},
        {"mode": "full", "basis": "activations", "lr_scale": 0.3},
        {"mode": "lora", "basis": "activations", "lr_scale": 0.3},
    ],
    "cwac-acts-only": [{"mode": mode, "lam": lam} for mode in ("full", "lora") for lam in (5.0, 20.0, 50.0)],
    "safelora": [{"tau": t} for t in (0.05, 0.15, 0.25, 0.35, 0.5, 0.7)],
    "csulora": [{"mu": m} for m in (1.0, 3.0, 10.0, 30.0, 100.0, 300.0)],
    # the paper's setting (LoRA r = 8 on W_Q / W_V, lr 3e-5, lambda 1, T 2, top-k 50), then lr up and lambda down
    "pact": [
        {"lr": 3e-5, "lam": 1.0, "temperature": 2.0, "k": 50},
        {"lr": 1e-4, "lam": 1.0, "temperature": 2.0, "k": 50},
        {"lr": 3e-4, "lam": 1.0, "temperature": 2.0, "k": 50},
        {"lr": 1e-3, "lam": 1.0, "temperature": 2.0, "k": 50},
        {"lr": 3e-4, "lam": 0.3, "temperature": 2.0, "k": 50},
        {"lr": 1e-3, "lam": 0.3, "temperature": 2.0, "k": 50},
    ],
}


def grid_label(method: str, i: int) -> str:
    """The benchmark label of grid point `i` of `method`."""
    return f"{method}@{i}"


def read_grid(source: str | Path | dict[str, Any], methods: Sequence[str]) -> tuple[dict[str, list[dict[str, Any]]], float | None]:
    """``(grids per method, reference accuracy or None)`` from ``"default"``, a JSON file or a dict:
    ``{"cwac": [{"lam": 5}, ...], "reference_accuracy": 0.62}`` (every listed method needs a grid;
    ``reference_accuracy`` is the reference method's mean val accuracy, when it is not to be run)."""
    if not methods:
        raise InputError("name at least one method to tune")
    if isinstance(source, str) and source == "default":
        missing = [m for m in methods if m not in DEFAULT_GRIDS]
        if missing:
            raise InputError(f"no default grid for {missing}: pass --grid GRID.json (default grids exist for {', '.join(DEFAULT_GRIDS)})")
        return {m: [dict(p) for p in DEFAULT_GRIDS[m]] for m in methods}, None
    d = source if isinstance(source, dict) else read_json(source, "grid file", 'pass a JSON object such as {"cwac": [{"lam": 5}, {"lam": 20}]}')
    if not isinstance(d, dict):
        raise InputError(f"{source}: a grid is a JSON object {{method: [points]}}, got {type(d).__name__}")
    ref = d.get("reference_accuracy")
    if ref is not None and (not isinstance(ref, int | float) or not 0.0 <= ref <= 1.0):
        raise InputError(f"{source}: reference_accuracy must be a fraction in [0, 1] (the reference's mean val accuracy), got {ref!r}")
    grids = {}
    for m in methods:
        points = d.get(m)
        if points is None:
            raise InputError(f"{source} has no grid for {m!r} (it has {sorted(k for k in d if k not in ('reference_accuracy', 'notes'))})")
        if not isinstance(points, list) or not points or not all(isinstance(p, dict) for p in points):
            raise InputError(f"{source}: the grid of {m!r} must be a non-empty list of hyperparameter dicts, got {points!r}")
        if any("method" in p for p in points):
            raise InputError(f"{source}: grid points of {m!r} must not set 'method' (the grid's key says which method it is)")
        grids[m] = [dict(p) for p in points]
    return grids, None if ref is None else float(ref)


def tune_config(base: BenchmarkConfig, grids: dict[str, list[dict[str, Any]]], run_reference: bool = True) -> BenchmarkConfig:
    """The benchmark config of a tuning call: every grid point a method label, on the val split
    (the reference method first when it runs)."""
    labels = {grid_label(m, i): {"method": m, **p} for m, pts in grids.items() for i, p in enumerate(pts)}
    methods = ([REFERENCE] if run_reference else []) + list(labels)
    hp = {k: v for k, v in base.method_hparams.items() if k == REFERENCE} if run_reference else {}
    return base.replace(methods=tuple(methods), method_hparams={**hp, **labels}, eval_split="val")


def _mean(results: dict[str, Any], label: str, metric: str) -> float | None:
    vals = [float(r[metric]) for r in results["runs"].values() if r["method"] == label and r.get(metric) is not None]
    return statistics.fmean(vals) if vals else None


def choose(results: dict[str, Any], grids: dict[str, list[dict[str, Any]]], reference_accuracy: float | None = None,
           tolerance: float = TOLERANCE) -> dict[str, Any]:
    """The tuning choice per method from a tuning call's results (see the module docstring)."""
    ref_source = "grid file"
    if reference_accuracy is None:
        reference_accuracy = _mean(results, REFERENCE, "accuracy")
        ref_source = f"{REFERENCE} run in this call"
        if reference_accuracy is None:
            raise InputError(f"no {REFERENCE} runs in the results to take the reference accuracy from: run it, or give "
                             "reference_accuracy in the grid file")
    settings = results.get("settings", {})
    out: dict[str, Any] = {"reference": {"method": REFERENCE, "accuracy": reference_accuracy, "source": ref_source},
                           "tolerance": tolerance, "methods": {}}
    for m, points in grids.items():
        rows: list[dict[str, Any]] = []
        for i, p in enumerate(points):
            label = grid_label(m, i)
            harm, acc = _mean(results, label, "harmful_score"), _mean(results, label, "accuracy")
            if harm is None or acc is None:
                raise InputError(f"grid point {label} has no finished runs in the results: rerun the tune command to finish it")
            rows.append({"label": label, "point": p, "hparams": _resolved(settings, m, p), "val_harmful_score": harm,
                         "val_accuracy": acc, "qualified": acc >= reference_accuracy - tolerance - 1e-12})
        ok = [r for r in rows if r["qualified"]]
        if ok:
            best = min(ok, key=lambda r: (r["val_harmful_score"], -r["val_accuracy"], rows.index(r)))
        else:
            best = min(rows, key=lambda r: (-r["val_accuracy"], r["val_harmful_score"], rows.index(r)))
        out["methods"][m] = {"points": rows, "chosen": best["label"], "hparams": best["hparams"], "qualified": bool(ok)}
    return out


def _resolved(settings: dict[str, Any], method: str, point: dict[str, Any]) -> dict[str, Any]:
    """A grid point as a config entry: ``lr_scale`` turned into the absolute ``lr`` it ran with."""
    from safecircuits.finetune.methods import get_method

    hp = {k: v for k, v in point.items() if k not in ("lr_scale", "method")}
    if "lr" not in hp:
        own = {k: v for k, v in point.items() if k not in LOOP_KEYS}
        mode = point.get("mode") or get_method(method, **own).mode
        key = "lora_lr" if mode == "lora" else "lr"
        base = settings.get(key)
        if base is None:
            raise InputError(f"the results' settings record no {key!r} to scale by {method}'s lr_scale")
        hp["lr"] = float(base) * float(point.get("lr_scale", 1.0))
    return hp


def tuned_config(results: dict[str, Any]) -> dict[str, Any]:
    """The config file of a tuning call (``bench finetune --config`` reads it): the chosen
    hyperparameters per method, the budget they were tuned with, and how they were chosen."""
    tune_ = results.get("tune")
    if not tune_:
        raise InputError("these results hold no tuning choice: make them with `safecircuits bench tune`")
    s = results["settings"]
    cfg = {"format": CONFIG_FORMAT,
           "method_hparams": {m: dict(c["hparams"]) for m, c in tune_["methods"].items()},
           **{k: s[k] for k in ("task", "steps", "lr", "lora_lr", "batch_size", "n_train", "n_safety")}}
    cfg["tuned_on"] = {
        "model": s["model"], "eval_split": s["eval_split"], "ratios": tune_["ratios"], "seeds": tune_["seeds"],
        "reference": tune_["reference"], "tolerance": tune_["tolerance"],
        "choices": {m: {"chosen": c["chosen"], "qualified": c["qualified"],
                        "val_harmful_score": next(r["val_harmful_score"] for r in c["points"] if r["label"] == c["chosen"]),
                        "val_accuracy": next(r["val_accuracy"] for r in c["points"] if r["label"] == c["chosen"]),
                        "grid": [r["point"] for r in c["points"]]}
                    for m, c in tune_["methods"].items()},
    }
    return cfg


def tune(
    lm: LoadedModel | str,
    methods: Sequence[str],
    grid: str | Path | dict[str, Any] = "default",
    config: BenchmarkConfig | None = None,
    json_path: str | Path | None = None,
    config_out: str | Path | None = None,
    tolerance: float = TOLERANCE,
    artifacts: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Tune `methods` on the val split (see the module docstring); returns the results with a
    ``tune`` section (``tune["methods"][m]["hparams"]``: the choice) and writes `json_path` and,
    given `config_out`, the config file of the choice.

    `config` gives the budget, ratios (default :data:`TUNE_RATIOS` when it is None), seeds,
    executor and ``method_hparams`` of the reference; its ``methods`` and ``eval_split`` are
    replaced by the grid and ``val``.
    """
    if not 0.0 <= tolerance <= 1.0:
        raise InputError(f"tolerance is a fraction of accuracy in [0, 1] (0.03 = 3 points), got {tolerance}")
    grids, ref_acc = read_grid(grid, list(dict.fromkeys(methods)))
    base = config or BenchmarkConfig(ratios=TUNE_RATIOS, seeds=(0,))
    cfg = tune_config(base, grids, run_reference=ref_acc is None)
    results = run_benchmark(lm, cfg, artifacts=artifacts, json_path=json_path, progress=progress)
    choice = choose(results, grids, ref_acc, tolerance)
    results["tune"] = {**choice, "ratios": list(cfg.ratios), "seeds": list(cfg.seeds)}
    if json_path is not None:
        write_json(json_path, results, indent=1)
    if config_out is not None:
        write_json(config_out, tuned_config(results), indent=2)
    return results


def tune_table(results: dict[str, Any]) -> str:
    """The grid of a tuning call as a markdown table (one row per point)."""
    t = results["tune"]
    ref = t["reference"]
    lines = [f"Reference: {ref['method']} val accuracy {100 * ref['accuracy']:.1f}% ({ref['source']}); a point qualifies with "
             f"accuracy >= {max(0.0, 100 * (ref['accuracy'] - t['tolerance'])):.1f}%.", "",
             "| method | point | hyperparameters | val harmful (%) | val accuracy (%) | qualifies | chosen |", "|---|---|---|---|---|---|---|"]
    for m, c in t["methods"].items():
        for r in c["points"]:
            hp = ", ".join(f"{k}={v}" for k, v in r["point"].items())
            lines.append(f"| {m} | {r['label']} | {hp} | {100 * r['val_harmful_score']:.1f} | {100 * r['val_accuracy']:.1f} | "
                         f"{'yes' if r['qualified'] else 'no'} | {'**chosen**' if r['label'] == c['chosen'] else ''} |")
    return "\n".join(lines)
