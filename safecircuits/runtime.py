"""Devices, dtypes and threads: one policy for every model (docs/devices.md).

* **Device.** ``resolve_device("auto")`` picks ``cuda``, then ``mps``, then ``cpu``.
* **Dtype.** ``resolve_dtype(None, ...)`` is the model's default compute dtype: ``float32`` for
  tiny models (the organisms), ``bfloat16`` for real models on a device with fast bf16 (CUDA
  with bf16 support, or a CPU with AVX512-BF16 / AMX), else ``float32``. Learned parameters
  (discovery masks, LoRA factors, SAEs) are always float32; the fine-tuning loop keeps float32
  master weights for a bf16 model.
* **Threads.** A tiny model uses one thread: its operations are too small for a team of threads
  to pay off, and a team beside another busy process loses far more than it gains. A real model
  uses every core that is *free*: :func:`free_cores` samples ``/proc/stat`` for a tenth of a
  second and leaves out the cores other processes are using, and long loops call
  :meth:`ThreadPolicy.refresh` so a neighbour that starts later is noticed. ``set_threads(n)``,
  ``$SAFECIRCUITS_THREADS`` or the CLI's ``--threads`` pin the count instead.
* **Determinism** is an opt-in (``set_deterministic(True)``, ``--deterministic``): one thread
  and deterministic algorithms, so a seed gives bitwise the same result on any machine.

Importing safecircuits before torch also caps OpenMP's busy-wait (``GOMP_SPINCOUNT``): a waiting
thread spins briefly, then sleeps, instead of spinning for ~0.1 s against other processes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from safecircuits.errors import InputError

__all__ = [
    "DTYPES",
    "ThreadPolicy",
    "compute_threads",
    "device_of",
    "free_cores",
    "is_deterministic",
    "is_tiny",
    "resolve_device",
    "resolve_dtype",
    "set_deterministic",
    "set_threads",
    "settings",
    "threads_for",
]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}
# Models with fewer block parameters than this run on one thread (organisms have ~0.2M, the
# smallest chat models ~100M; measured in benchmarks/real_model_speed.py).
TINY_PARAMS = 5_000_000


@dataclass
class Settings:
    """Process-wide defaults that the CLI's global options set (``None`` = the policy decides)."""

    device: str | None = None
    dtype: str | None = None
    threads: int | None = None
    deterministic: bool = False


settings = Settings()


def _env_threads() -> int | None:
    v = os.environ.get("SAFECIRCUITS_THREADS")
    if not v:
        return None
    try:
        n = int(v)
    except ValueError:
        raise InputError(f"SAFECIRCUITS_THREADS={v!r} is not a whole number; set it to a thread count such as 2, or unset it") from None
    if n < 1:
        raise InputError(f"SAFECIRCUITS_THREADS={v!r} must be >= 1")
    return n


# -- devices and dtypes ------------------------------------------------------------------------

def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> cuda, then mps, then cpu; otherwise the named device, checked."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        device = settings.device or "auto"
        if device == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
                return torch.device("mps")
            return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for, but this machine has no CUDA GPU (torch {torch.__version__}); "
                         "use --device cpu (or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r} was asked for, but MPS is not available here; use --device cpu (or auto)")
    return dev


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` is empty on most Linux
    systems), for the environment records of benchmarks; "unknown" where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device | str = "cpu", tiny: bool = False) -> torch.dtype:
    """A dtype name or torch dtype, checked; None -> the default for the model and device (module doc)."""
    if dtype is None:
        dtype = settings.dtype
    if dtype is None or dtype == "auto":
        if tiny:
            return torch.float32
        dev = torch.device(device)
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        if dev.type == "cpu":
            return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise InputError(f"dtype {dtype} is not supported: use float32, bfloat16 or float16")
        return dtype
    key = str(dtype).strip().lower().removeprefix("torch.")
    if key not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}: use float32, bfloat16 or float16 (or auto)")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of a model's parameters (the first one; models here live on one device)."""
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def is_tiny(model: torch.nn.Module) -> bool:
    """Whether `model` is small enough that one thread is the fastest way to run it."""
    blocks = getattr(model, "blocks", None)
    params = blocks.parameters() if blocks is not None else model.parameters()
    return sum(p.numel() for p in params) < TINY_PARAMS


# -- threads -----------------------------------------------------------------------------------

def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies over every CPU, from /proc/stat; None where it does not exist."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def free_cores(sample_seconds: float = 0.1) -> int:
    """How many cores are not busy with *other* processes, sampled over `sample_seconds`.

    Busy time comes from ``/proc/stat``; this process's own CPU time over the same interval is
    subtracted, so a job that already runs on every core still counts them as its own. Where
    ``/proc/stat`` is missing (macOS, Windows), every core counts as free.
    """
    n = _cpu_count()
    a = _cpu_times()
    if a is None:
        return n
    own0, w0 = _own_cpu(), time.perf_counter()
    time.sleep(sample_seconds)
    b = _cpu_times()
    own1, w1 = _own_cpu(), time.perf_counter()
    if b is None or b[1] <= a[1]:
        return n
    ncpu_all = os.cpu_count() or n
    busy_cores = (b[0] - a[0]) / (b[1] - a[1]) * ncpu_all  # cores busy over the sample, all processes
    own_cores = (own1 - own0) / max(w1 - w0, 1e-6)
    others = max(0.0, busy_cores - own_cores)
    return max(1, min(n, round(n - others)))


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def set_threads(n: int | None) -> None:
    """Pin the thread count for every later job (None: back to the policy)."""
    if n is not None and (not isinstance(n, int) or n < 1):
        raise InputError(f"threads must be a whole number >= 1 (or None for the policy), got {n!r}")
    settings.threads = n


def set_deterministic(flag: bool = True) -> None:
    """Opt in to bitwise-reproducible runs: one thread and deterministic algorithms (slower on
    real models: see docs/devices.md for the measured cost)."""
    settings.deterministic = bool(flag)
    torch.use_deterministic_algorithms(bool(flag), warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = bool(flag)
        torch.backends.cudnn.benchmark = False if flag else torch.backends.cudnn.benchmark


def is_deterministic() -> bool:
    return settings.deterministic


def threads_for(model: torch.nn.Module | None = None, sample: bool = True) -> int:
    """The thread count the policy gives a job on `model` (see the module doc)."""
    if settings.deterministic:
        return 1
    pinned = settings.threads or _env_threads()
    if pinned is not None:
        return pinned
    if model is not None and (device_of(model).type != "cpu" or is_tiny(model)):
        return 1  # a GPU job needs no CPU team; a tiny model runs fastest on one thread
    return free_cores() if sample else _cpu_count()


class ThreadPolicy:
    """Sets the thread count for one job and restores the caller's when it ends.

    ``refresh()`` re-samples the free cores at most every ``interval`` seconds (call it in a
    loop's body: it costs nothing between samples), so a job adapts when a neighbour starts or
    stops. A pinned or deterministic count never changes.
    """

    def __init__(self, model: torch.nn.Module | None = None, interval: float = 30.0):
        self.model = model
        self.interval = interval
        self.adaptive = not settings.deterministic and (settings.threads or _env_threads()) is None and not (
            model is not None and (device_of(model).type != "cpu" or is_tiny(model)))
        self._prev = torch.get_num_threads()
        self._last = 0.0
        self.threads = self._apply(threads_for(model))

    def _apply(self, n: int) -> int:
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        self._last = time.monotonic()
        return n

    def refresh(self) -> int:
        if self.adaptive and time.monotonic() - self._last >= self.interval:
            self.threads = self._apply(threads_for(self.model))
        return self.threads

    def close(self) -> None:
        if torch.get_num_threads() != self._prev:
            torch.set_num_threads(self._prev)


_active: list[ThreadPolicy] = []


@contextlib.contextmanager
def compute_threads(model: torch.nn.Module | None = None, interval: float = 30.0) -> Iterator[ThreadPolicy]:
    """``with compute_threads(model) as policy: ...``: the policy's threads for the body.

    Nested jobs (an evaluation inside a benchmark run) share the outermost job's policy, so the
    free cores are sampled once per job, not once per call.
    """
    if _active:
        yield _active[-1]
        return
    policy = ThreadPolicy(model, interval)
    _active.append(policy)
    try:
        yield policy
    finally:
        _active.pop()
        policy.close()


def describe() -> dict[str, Any]:
    """What the policy sees now (for provenance and ``safecircuits --help``-style reports)."""
    return {"cpu_count": _cpu_count(), "pinned_threads": settings.threads or _env_threads(),
            "deterministic": settings.deterministic, "cuda": torch.cuda.is_available(),
            "cpu_fast_bf16": cpu_has_fast_bf16(), "torch_threads": torch.get_num_threads()}
