"""Where the benchmark's runs execute: this process (``local``) or a Ray cluster (``ray``).

Both executors run the same code for one (method, ratio, seed),
:meth:`safecircuits.finetune.benchmark.BenchmarkRunner.run`, so their results are the same figures;
:func:`~safecircuits.finetune.benchmark.run_benchmark` writes each finished run to the results
file as it arrives and skips runs already there, whichever executor made them.

**Ray** (optional: ``pip install ray``, or the ``scale`` extra). Each run is one Ray task: one
worker, ``num_gpus=1`` when the cluster has GPUs (else CPU only), ``num_cpus=cpus_per_run``. A
worker gets the model's *name* (a name or directory ``load_model`` takes) and the config, never a
model object; it loads the model, builds or reads the artifacts from its cache
(``$SAFECIRCUITS_CACHE``) and keeps both for the next run it gets. Before the runs, one task
loads the model and prepares the artifacts, so runs on the same machine find them cached.

* one machine: ``address=None`` starts a Ray instance here (stopped again at the end) unless this
  process already called ``ray.init``;
* a cluster: ``ray start --head`` on one node, ``ray start --address HEAD:6379`` on the others,
  then ``--address auto`` (or the head's address) on the head node. Every node needs the same
  safecircuits install and its model caches (or one shared ``SAFECIRCUITS_CACHE``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from safecircuits.errors import InputError
from safecircuits.models.loaded import LoadedModel

RAY_INSTALL = "pip install ray  (or: pip install 'safecircuits[scale]')"

__all__ = ["LocalSession", "RAY_INSTALL", "RaySession", "model_spec", "start_session"]

Todo = list[tuple[str, float, int]]


def model_spec(lm: LoadedModel | str) -> str:
    """A string ``load_model`` turns into `lm` again in another process: a saved model's directory
    (``safecircuits align`` / ``finetune`` output), else the model's name."""
    if isinstance(lm, str):
        return lm
    src = lm.info.get("source")
    if "finetune" in lm.info and isinstance(src, str) and (Path(src) / "config.json").is_file():
        return str(Path(src).resolve())
    return lm.name


def start_session(lm: LoadedModel | str, config: Any, artifacts: dict[str, Any] | None, progress: bool):
    """The session of `config.executor` for one benchmark call."""
    if config.executor == "ray":
        return RaySession(lm, config, artifacts, progress)
    return LocalSession(lm, config, artifacts, progress)


def _load(spec: str, device: str | None, dtype: str | None) -> LoadedModel:
    from safecircuits.models import load_model

    return load_model(spec, device=device or "auto", dtype=dtype, progress=False)


class LocalSession:
    """Every run in this process, one after the other, on the model as loaded."""

    def __init__(self, lm: LoadedModel | str, config: Any, artifacts: dict[str, Any] | None, progress: bool):
        from safecircuits.finetune.benchmark import BenchmarkRunner

        lm = lm if isinstance(lm, LoadedModel) else _load(lm, None, config.dtype)
        self.runner = BenchmarkRunner(lm, config, artifacts, progress=progress)
        self.settings = self.runner.settings()
        self.provenance = {**self.runner.provenance(), "executor": {"kind": "local"}}

    def run_many(self, todo: Todo, progress: bool) -> Iterator[tuple[str, dict[str, Any]]]:
        from safecircuits.finetune.benchmark import run_key

        bar = tqdm(todo, desc="finetune benchmark", disable=not progress)
        for m, p, s in bar:
            bar.set_postfix_str(run_key(m, p, s))
            yield run_key(m, p, s), self.runner.run(m, p, s)

    def start(self) -> dict[str, Any]:
        """The model before fine-tuning, evaluated (BenchmarkRunner.start)."""
        return self.runner.start()

    def close(self) -> None:
        return None


# -- Ray ----------------------------------------------------------------------------------------
# One BenchmarkRunner per worker process and (model, config): a worker that gets several runs
# loads the model and artifacts once.
_WORKER_RUNNERS: dict[str, Any] = {}


def _worker_runner(spec: str, config_dict: dict[str, Any], artifacts: dict[str, Any] | None) -> Any:
    import ray

    from safecircuits.finetune.benchmark import BenchmarkConfig, BenchmarkRunner

    device = "cuda" if ray.get_gpu_ids() else "cpu"  # only the GPU Ray gave this task, else the CPU
    key = json.dumps([spec, device, config_dict, artifacts is not None], sort_keys=True, default=str)
    if key not in _WORKER_RUNNERS:
        config = BenchmarkConfig.from_dict(config_dict)
        _WORKER_RUNNERS.clear()  # one model per worker
        _WORKER_RUNNERS[key] = BenchmarkRunner(_load(spec, device, config.dtype), config, artifacts, progress=False)
    return _WORKER_RUNNERS[key]


def _ray_describe(spec: str, config_dict: dict[str, Any], artifacts: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """In a worker: load the model, prepare (cache) the artifacts; the benchmark's settings and provenance."""
    runner = _worker_runner(spec, config_dict, artifacts)
    return runner.settings(), runner.provenance()


def _ray_run(spec: str, config_dict: dict[str, Any], artifacts: dict[str, Any] | None, label: str, ratio: float,
             seed: int) -> dict[str, Any]:
    """In a worker: one (method, ratio, seed) run."""
    return _worker_runner(spec, config_dict, artifacts).run(label, ratio, seed)


def _ray_start(spec: str, config_dict: dict[str, Any], artifacts: dict[str, Any] | None) -> dict[str, Any]:
    """In a worker: the model before fine-tuning, evaluated."""
    return _worker_runner(spec, config_dict, artifacts).start()


def _shippable(artifacts: dict[str, Any]) -> dict[str, Any]:
    """Artifacts for the object store: a model (PACT's base) travels as its name and is loaded in the worker."""
    return {k: model_spec(v) if isinstance(v, LoadedModel) else v for k, v in artifacts.items()}


class RaySession:
    """Each run is a Ray task; results come back as they finish (see the module docstring)."""

    def __init__(self, lm: LoadedModel | str, config: Any, artifacts: dict[str, Any] | None, progress: bool):
        try:
            import ray
        except ImportError:
            raise InputError(f"the ray executor needs Ray, which is not installed: {RAY_INSTALL}") from None
        self.ray = ray
        self.owns = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"address": config.address, "include_dashboard": False, "logging_level": "warning"}
            if config.address is None:
                kw["log_to_driver"] = progress
            ray.init(**kw)
            self.owns = True
        elif config.address not in (None, "auto"):
            raise InputError(f"Ray is already initialised in this process; cannot connect to {config.address} as well "
                             "(call ray.shutdown() first or leave the address out)")
        try:
            self._start(lm, config, artifacts)
        except BaseException:
            self.close()
            raise

    def _start(self, lm: LoadedModel | str, config: Any, artifacts: dict[str, Any] | None) -> None:
        ray = self.ray
        self.spec = model_spec(lm)
        self.config_dict = config.to_dict()
        gpus = config.gpus_per_run
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        self.options = {"num_cpus": config.cpus_per_run, "num_gpus": gpus, "max_retries": 0}
        self.artifacts_ref = ray.put(_shippable(artifacts)) if artifacts is not None else None
        describe = ray.remote(_ray_describe).options(**self.options)
        self.settings, prov = ray.get(describe.remote(self.spec, self.config_dict, self.artifacts_ref))
        self.provenance = {**prov, "executor": {"kind": "ray", "address": config.address, "model": self.spec, **self.options,
                                                "cluster": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}}}

    def start(self) -> dict[str, Any]:
        """The model before fine-tuning, evaluated in a worker (BenchmarkRunner.start)."""
        remote = self.ray.remote(_ray_start).options(**self.options)
        return self.ray.get(remote.remote(self.spec, self.config_dict, self.artifacts_ref))

    def run_many(self, todo: Todo, progress: bool) -> Iterator[tuple[str, dict[str, Any]]]:
        from safecircuits.finetune.benchmark import run_key

        ray = self.ray
        remote = ray.remote(_ray_run).options(**self.options)
        pending = {remote.remote(self.spec, self.config_dict, self.artifacts_ref, m, p, s): run_key(m, p, s) for m, p, s in todo}
        bar = tqdm(total=len(pending), desc="finetune benchmark (ray)", disable=not progress)
        errors: list[tuple[str, BaseException]] = []
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    key = pending.pop(ref)
                    bar.update(1)
                    try:
                        rec = ray.get(ref)
                    except Exception as e:  # one failed run does not stop the others; raised at the end
                        errors.append((key, e))
                        bar.write(f"run {key} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                        continue
                    bar.set_postfix_str(key)
                    yield key, rec
        finally:
            for ref in pending:  # interrupted: do not leave runs going
                ray.cancel(ref, force=True)
            bar.close()
        if errors:
            if len(errors) > 1:
                bar.write(f"{len(errors)} runs failed: {', '.join(k for k, _ in errors)}; finished runs are in the results file")
            raise errors[0][1]

    def close(self) -> None:
        if self.owns:
            self.ray.shutdown()
