"""The harmful fine-tuning benchmark (METHODS.md section 6).

For every (method, harmful ratio p, seed) the aligned model is fine-tuned on the same task data
(``task.train_data(lm, p, n_train, seed)``), for the same number of steps, with the same seed; the
result reports the **harmful score** (share of held-out harmful prompts answered with compliance),
the **fine-tune accuracy** (exact match on held-out task prompts), the harmless next-token KL to
the aligned model, the trainable-parameter share, the wall time and the time per step.

Each finished run is written to the JSON file at once (atomically), so an interrupted benchmark
resumes where it stopped: runs already in the file are skipped. :func:`aggregate` gives mean and
std over seeds, :func:`markdown_table` the tables in docs/finetune.md, and
:func:`safecircuits.viz.finetune.benchmark_figure` the figure.

:func:`prepare_artifacts` builds (and caches on disk) what the methods need: the safety circuit
(SCT), the weight-delta subspace vs the pre-alignment base (CWAC, SafeLoRA, CSULoRA), a residual
activation subspace (CWAC's ``basis="activations"``), an SAE with its safety features (CWAC), and
the base model itself (PACT). On an organism every input has a default; a chat model such as
SmolLM2 gives its base model and train prompts (``benchmarks/finetune_smollm2.py``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError
from safecircuits.finetune.tasks import default_task, get_task
from safecircuits.models.loaded import LoadedModel, cache_dir

FORMAT = "safecircuits-finetune-benchmark/1"
DEFAULT_METHODS: tuple[str, ...] = (
    "sft", "lora", "sct-freeze", "sct-tune", "cwac", "cwac-weights-only", "cwac-acts-only", "safelora", "csulora", "pact",
)
DEFAULT_RATIOS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
METRICS: tuple[str, ...] = ("harmful_score", "accuracy", "harmless_kl", "harmless_refusal", "trainable_share", "wall_seconds", "step_seconds")

# The calibrated organism budget (docs/finetune.md, "Benchmark"): with it plain sft at p = 0.1
# reaches a harmful score >= 50% while learning the task.
DEFAULTS: dict[str, Any] = {"steps": 60, "lr": 1e-3, "lora_lr": 3e-3, "batch_size": 16, "n_train": 512, "n_safety": 64}
# Per-method hyperparameters of the benchmark (tuned on the val split, docs/finetune.md).
METHOD_HPARAMS: dict[str, dict[str, Any]] = {}


# -- artifacts ----------------------------------------------------------------------------------
def base_name_for(lm: LoadedModel) -> str:
    """The pre-alignment base model of `lm` (its profile's ``base_model``), or an InputError."""
    base = lm.profile.base_model
    if base is None:
        raise InputError(f"{lm.name} records no pre-alignment base model: pass base=... (a model name) to prepare_artifacts")
    return base


def _needs(methods: Sequence[str]) -> set[str]:
    from safecircuits.finetune.methods import METHODS

    out: set[str] = set()
    for m in methods:
        if m not in METHODS:
            raise InputError(f"unknown fine-tuning method {m!r}: use some of {', '.join(sorted(METHODS))}")
        out |= set(METHODS[m].needs)
    return out


def prepare_artifacts(
    model: str | LoadedModel,
    methods: Sequence[str] = DEFAULT_METHODS,
    base: str | LoadedModel | None = None,
    rank: int = 32,
    sae_hook: str | None = None,
    sae_tokens: int = 100_000,
    root: str | Path | None = None,
    progress: bool = True,
    circuit: Any = None,
    prompts: tuple[PromptSet, PromptSet] | None = None,
    sae_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build or load from cache what `methods` need for `model`.

    Every input has a default from the model's profile: the base model is the one it was aligned
    from (``profile.base_model``), and the activation basis and the SAE come from the profile's
    train prompts. ``base`` (a model name or an already loaded :class:`LoadedModel`) and
    ``prompts``, a ``(harmful, harmless)`` pair of train PromptSets, override them.
    ``sae_kwargs`` go to ``train_sae`` (e.g. ``{"d_sae": 1024, "k": 32}``).

    ``circuit`` (a :class:`~safecircuits.circuits.circuit.Circuit` already found for `model`, e.g. by
    the demo, or by attribution patching on a model too large for mask learning on CPU) is used as
    the safety circuit instead of running ``find_circuit``.

    Returns ``{"base": LoadedModel, "subspace": WeightDeltaSubspace (rank `rank`),
    "activation_subspace": [d_model, k] tensor, "features": FeatureSet, "circuit": Circuit}``
    (only the entries the methods need). Cached under ``root`` (default
    ``$SAFECIRCUITS_CACHE/finetune/artifacts/<model>-<hash>``).
    """
    from safecircuits.models import load_model

    lm = model if isinstance(model, LoadedModel) else load_model(model, progress=False)
    needs = _needs(methods)
    if not needs:
        return {}
    base_name = base.name if isinstance(base, LoadedModel) else (base or base_name_for(lm))
    key_parts: list[Any] = [lm.name, lm.info.get("config_hash"), base_name, rank, sae_hook, sae_tokens]
    if prompts is not None or sae_kwargs:  # organism caches keep their old keys
        key_parts += [[ps.content_hash for ps in prompts or ()], sae_kwargs or {}]
    key = hashlib.sha256(json.dumps(key_parts, default=str).encode()).hexdigest()[:12]
    slug = lm.name.replace(":", "-").replace("?", "-").replace("=", "-").replace("/", "-")
    root = Path(root) if root is not None else cache_dir("finetune") / "artifacts" / f"{slug}-{key}"
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    # the base model is loaded only when used (PACT, or a weight-delta subspace not cached yet), on the model's device
    need_base = "base" in needs or ("subspace" in needs and not (root / "subspace.safetensors").exists())
    base_lm = None
    if need_base:
        base_lm = base if isinstance(base, LoadedModel) else load_model(base_name, device=str(lm.model.cfg.device), progress=False)
    if "base" in needs:
        out["base"] = base_lm
    if "subspace" in needs:
        from safecircuits.subspaces import WeightDeltaSubspace

        p = root / "subspace.safetensors"
        if not p.exists():
            WeightDeltaSubspace.from_models(lm, base_lm, rank=rank, progress=progress).save(p)
        out["subspace"] = WeightDeltaSubspace.load(p)
        out["activation_subspace"] = _activation_basis(lm, root / "activation_basis.safetensors", prompts=prompts)
    if "features" in needs:
        out["features"] = _features(lm, root, sae_hook, sae_tokens, progress, prompts=prompts, sae_kwargs=sae_kwargs)
    if "circuit" in needs:
        out["circuit"] = circuit if circuit is not None else _safety_circuit(lm, root / "safety_circuit.json", progress)
    return out


def _safety_circuit(lm: LoadedModel, path: Path, progress: bool):
    """The cached ``find_circuit(lm, "safety")`` (about 2 minutes on the small organism the first time)."""
    from safecircuits.circuits.circuit import Circuit

    if not path.exists():
        from safecircuits.circuits.recipes import find_circuit

        circuit, _ = find_circuit(lm, "safety", progress=progress)
        circuit.to_json(path)
    return Circuit.from_json(path)


def _activation_basis(lm: LoadedModel, path: Path, k: int = 2, prompts: tuple[PromptSet, PromptSet] | None = None) -> torch.Tensor:
    """Orthonormalised harmful-minus-harmless activation subspaces (k per residual layer), from
    `prompts` = (harmful, harmless) or, on an organism, its language's train prompts."""
    from safetensors.torch import load_file, save_file

    if path.exists():
        return load_file(str(path))["basis"]
    from safecircuits.subspaces import compute_activation_subspaces

    if prompts is not None:
        harm, ok = prompts
    else:
        n = lm.profile.sizes["refusal"]
        harm, ok = lm.profile.prompts("train", "harmful", n=n), lm.profile.prompts("train", "harmless", n=n)
    bases = [sub.basis for sub in compute_activation_subspaces(lm.model, lm.chat, harm, ok, k=k)]  # every residual layer, one pass
    q, _ = torch.linalg.qr(torch.cat(bases, 1).double())
    basis = q.float().contiguous()
    tmp = path.with_suffix(".tmp")
    save_file({"basis": basis}, str(tmp))
    os.replace(tmp, path)
    return basis


def _features(lm: LoadedModel, root: Path, hook: str | None, tokens: int, progress: bool,
              prompts: tuple[PromptSet, PromptSet] | None = None, sae_kwargs: dict[str, Any] | None = None):
    """The SAE (default: last residual layer, as tuned on the organism) and its ``diff``-ranked features."""
    from safecircuits.features import FeatureSet, load_sae, rank_features, train_sae

    fpath = root / "features.json"
    if fpath.exists():
        return FeatureSet.load(fpath)
    hook = hook or f"blocks.{lm.model.cfg.n_layers - 1}.hook_resid_post"
    sae_dir = root / "sae"
    train = prompts[0] + prompts[1] if prompts is not None else None
    if not (sae_dir / "cfg.json").exists():
        train_sae(lm, train, hook, training_tokens=tokens, out_dir=sae_dir, n_checkpoints=0, progress=progress, **(sae_kwargs or {}))
    sae = load_sae(sae_dir, device=lm.model.cfg.device)
    fs = rank_features(lm, sae, train if train is not None else lm.profile.sae_prompts("train"), method="diff", hook=hook, sae_path=sae_dir)
    fs.save(fpath)
    return fs


# -- the benchmark ------------------------------------------------------------------------------
def run_key(method: str, ratio: float, seed: int) -> str:
    return f"{method}|p={ratio:g}|seed={seed}"


def _read_results(path: Path, fix: str) -> dict[str, Any]:
    """A benchmark results file, or a ValueError that names the problem and `fix`."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read a benchmark results file: not valid JSON or not readable ({e}); {fix}") from None
    if d.get("format") != FORMAT:
        raise InputError(f"{path} is not a fine-tuning benchmark file (format {d.get('format')!r}); {fix}")
    return d


def _load_results(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    if not path.exists():
        return {"format": FORMAT, "settings": settings, "runs": {}}
    d = _read_results(path, "delete it or pass another --json path")
    if d.get("settings") != settings:
        diff = {k: (d.get("settings", {}).get(k), v) for k, v in settings.items() if d.get("settings", {}).get(k) != v}
        raise InputError(f"{path} holds runs made with other settings {diff} (file, now): pass another --json path or delete the file")
    return d


def _write_atomic(path: Path, d: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(d, indent=1, default=str))
    os.replace(tmp, path)


def run_benchmark(
    model_name: str | LoadedModel,
    methods: Sequence[str] = DEFAULT_METHODS,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    steps: int | None = None,
    task: str | None = None,
    artifacts: dict[str, Any] | None = None,
    json_path: str | Path | None = None,
    lr: float | None = None,
    lora_lr: float | None = None,
    batch_size: int | None = None,
    n_train: int | None = None,
    n_safety: int | None = None,
    method_hparams: dict[str, dict[str, Any]] | None = None,
    eval_split: str = "test",
    eval_limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune `model_name` with every method x ratio x seed; returns (and writes) the results dict.

    `model_name` may be a loaded model (e.g. one already on a GPU). ``eval_limit`` caps the
    held-out task and harmful prompts per evaluation (reduced budgets on real models).

    ``results["runs"][run_key(m, p, s)]`` holds each run's figures; ``results["aggregate"]`` the
    mean / std over seeds per (method, ratio). Runs already in `json_path` are skipped.
    """
    from safecircuits.finetune.loop import FinetuneConfig, finetune
    from safecircuits.finetune.methods import METHODS, get_method
    from safecircuits.models import load_model

    for p in ratios:
        if not 0.0 <= float(p) <= 1.0:
            raise InputError(f"harmful ratio {p} is not in [0, 1]")
    if not methods or not ratios or not seeds:
        raise InputError("give at least one method, one ratio and one seed")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown fine-tuning methods {unknown}: use some of {', '.join(sorted(METHODS))}")
    lm = model_name if isinstance(model_name, LoadedModel) else load_model(model_name, progress=False)
    model_name = lm.name
    task_obj = get_task(task or default_task(lm))
    hp = {**METHOD_HPARAMS, **(method_hparams or {})}
    settings = {
        "model": model_name, "task": task_obj.name, "eval_split": eval_split,
        "steps": steps or DEFAULTS["steps"], "lr": lr or DEFAULTS["lr"], "lora_lr": lora_lr or DEFAULTS["lora_lr"],
        "batch_size": batch_size or DEFAULTS["batch_size"], "n_train": n_train or DEFAULTS["n_train"],
        "n_safety": n_safety or DEFAULTS["n_safety"], "method_hparams": {m: hp.get(m, {}) for m in sorted(hp)},
    }
    if eval_limit is not None:
        settings["eval_limit"] = eval_limit
    path = Path(json_path) if json_path is not None else None
    results = _load_results(path, settings) if path is not None else {"format": FORMAT, "settings": settings, "runs": {}}
    if artifacts is None:
        artifacts = prepare_artifacts(lm, methods, progress=progress)
    safety = task_obj.safety_data(lm, settings["n_safety"], seed=0)
    results["provenance"] = {
        "model": {k: v for k, v in lm.provenance().items() if k != "metrics"},
        "judge": lm.profile.default_judge,
        "safety_prompts": safety.provenance(),
        "artifacts": {k: _artifact_summary(v) for k, v in artifacts.items()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    todo = [(m, float(p), int(s)) for m in methods for p in ratios for s in seeds if run_key(m, float(p), int(s)) not in results["runs"]]
    bar = tqdm(todo, desc="finetune benchmark", disable=not progress)
    for m, p, s in bar:
        bar.set_postfix_str(run_key(m, p, s))
        method = get_method(m, **hp.get(m, {}))
        data = task_obj.train_data(lm, p, settings["n_train"], seed=s)
        lora = method.mode == "lora"
        cfg_kw: dict[str, Any] = {}
        if hasattr(method, "lora_targets"):
            cfg_kw["lora_targets"] = method.lora_targets
        if hasattr(method, "lora_rank"):
            cfg_kw["lora_rank"] = method.lora_rank
        cfg = FinetuneConfig(steps=settings["steps"], lr=settings["lora_lr"] if lora else settings["lr"], batch_size=settings["batch_size"],
                             seed=s, progress=False, **cfg_kw)
        t0 = time.perf_counter()
        run = finetune(lm, data, method, cfg, artifacts={k: artifacts[k] for k in method.needs if k in artifacts} | _extra(method, artifacts), safety_prompts=safety)
        wall = time.perf_counter() - t0
        ev = task_obj.evaluate(run.lm, reference=lm, split=eval_split, limit=eval_limit)
        rec = {
            "method": m, "ratio": p, "seed": s, "mode": method.mode, "hparams": method.config(),
            "harmful_score": ev["harmful_score"], "accuracy": ev["accuracy"], "harmless_kl": ev.get("harmless_kl"),
            "harmless_refusal": ev["harmless_refusal"], "harmful_refusal": ev["harmful_refusal"],
            "trainable_share": run.trainable_share, "wall_seconds": round(wall, 3), "step_seconds": wall / settings["steps"],
            "final_loss": run.final_loss, "data": data.provenance(), "eval": {k: v for k, v in ev.items() if k != "examples"},
            "examples": ev["examples"], "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        results["runs"][run_key(m, p, s)] = rec
        results["aggregate"] = aggregate(results)
        if path is not None:
            _write_atomic(path, results)
    results["aggregate"] = aggregate(results)
    if path is not None:
        _write_atomic(path, results)
    return results


def _extra(method: Any, artifacts: dict[str, Any]) -> dict[str, Any]:
    """Optional artifacts a method can use beyond its declared needs (CWAC's activation basis)."""
    return {k: artifacts[k] for k in ("activation_subspace",) if k in artifacts and method.name.startswith("cwac")}


def _artifact_summary(v: Any) -> Any:
    if isinstance(v, LoadedModel):
        return {"model": v.name, "config_hash": v.info.get("config_hash")}
    if isinstance(v, torch.Tensor):
        return {"tensor": list(v.shape)}
    prov = getattr(v, "provenance", None)
    return {"type": type(v).__name__, "provenance": prov} if isinstance(prov, dict) else type(v).__name__


def merge_results(*parts: dict[str, Any] | str | Path) -> dict[str, Any]:
    """One results dict from benchmark files (or dicts) run as separate processes or machines with
    the same settings, e.g. methods split over two CPU cores: the union of their runs, the
    provenance of the last part, and a fresh aggregate. Raises if settings differ or two parts
    hold the same run with different figures."""
    if not parts:
        raise InputError("give at least one benchmark results file or dict to merge")
    loaded = [part if isinstance(part, dict) else _read_results(part, "merge only files written by run_benchmark") for part in parts]
    settings = loaded[0].get("settings")
    runs: dict[str, Any] = {}
    for i, d in enumerate(loaded):
        if d.get("settings") != settings:
            diff = {k: (settings.get(k), v) for k, v in d.get("settings", {}).items() if settings.get(k) != v}
            raise InputError(f"part {i} was run with other settings than part 0 {diff}: only runs of one benchmark can be merged")
        for k, r in d["runs"].items():
            if k in runs and runs[k] != r:
                raise InputError(f"run {k} is in two parts with different results: keep one of them")
            runs[k] = r
    out = {"format": FORMAT, "settings": settings, "runs": runs, "provenance": loaded[-1].get("provenance", {})}
    out["aggregate"] = aggregate(out)
    return out


def aggregate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Mean and std (sample std; 0 for one seed) over seeds of every metric, per (method, ratio)."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in results["runs"].values():
        groups.setdefault((r["method"], r["ratio"]), []).append(r)
    out = []
    for (m, p), runs in groups.items():
        row: dict[str, Any] = {"method": m, "ratio": p, "n_seeds": len(runs), "seeds": sorted(r["seed"] for r in runs)}
        for k in METRICS:
            vals = [float(r[k]) for r in runs if r.get(k) is not None]
            if vals:
                row[k] = statistics.fmean(vals)
                row[f"{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out.append(row)
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in results["runs"].values()))}
    return sorted(out, key=lambda r: (order[r["method"]], r["ratio"]))


def markdown_table(results: dict[str, Any]) -> str:
    """Harmful score and accuracy (mean ± std over seeds, %) per method and ratio, plus cost columns at p = 0.1."""
    agg = results.get("aggregate") or aggregate(results)
    ratios = sorted({r["ratio"] for r in agg})
    methods = list(dict.fromkeys(r["method"] for r in agg))
    cell = {(r["method"], r["ratio"]): r for r in agg}

    def pct(r: dict[str, Any] | None, k: str) -> str:
        if r is None or k not in r:
            return "-"
        return f"{100 * r[k]:.1f} ± {100 * r[k + '_std']:.1f}"

    ref = 0.1 if 0.1 in ratios else ratios[0]
    head = "| method | " + " | ".join(f"p={p:g}" for p in ratios) + " |"
    sep = "|---|" + "---|" * len(ratios)
    lines = ["**Harmful score (%)**, lower is safer", "", head, sep]
    lines += [f"| {m} | " + " | ".join(pct(cell.get((m, p)), "harmful_score") for p in ratios) + " |" for m in methods]
    lines += ["", "**Fine-tune accuracy (%)**, higher is better", "", head, sep]
    lines += [f"| {m} | " + " | ".join(pct(cell.get((m, p)), "accuracy") for p in ratios) + " |" for m in methods]
    lines += ["", f"**Cost and drift at p={ref:g}**", "", "| method | harmless KL | harmless refusal (%) | trainable share (%) | s / step |", "|---|---|---|---|---|"]
    for m in methods:
        r = cell.get((m, ref))
        if r is None:
            continue
        kl = f"{r['harmless_kl']:.3f} ± {r['harmless_kl_std']:.3f}" if "harmless_kl" in r else "-"
        lines.append(f"| {m} | {kl} | {100 * r['harmless_refusal']:.1f} | {100 * r['trainable_share']:.2f} | {r['step_seconds']:.3f} |")
    s = results.get("settings", {})
    n = {len(r["seeds"]) for r in agg}
    lines += ["", f"{s.get('model')}, task {s.get('task')}, {s.get('steps')} steps, lr {s.get('lr')} (LoRA {s.get('lora_lr')}), "
              f"batch {s.get('batch_size')}, {s.get('n_train')} examples, evaluated on the {s.get('eval_split')} split; "
              f"mean ± std over {'/'.join(str(x) for x in sorted(n))} seeds. s / step includes set-up (wall time / steps)."]
    return "\n".join(lines)


__all__ = ["DEFAULTS", "DEFAULT_METHODS", "DEFAULT_RATIOS", "DEFAULT_SEEDS", "METHOD_HPARAMS", "aggregate", "base_name_for",
           "markdown_table", "merge_results", "prepare_artifacts", "run_benchmark", "run_key"]
