"""Typed results of a circuit's evaluation: each saves and loads as JSON without the model.

:func:`~safecircuits.circuits.evaluate.circuit_effect` returns a :class:`CircuitEffect`,
:func:`~safecircuits.circuits.evaluate.random_control` a :class:`RandomControl`,
:func:`~safecircuits.circuits.evaluate.faithfulness_curve` a :class:`FaithfulnessCurve` and
:func:`~safecircuits.circuits.evaluate.seed_stability` a :class:`SeedStability`. Their fields are
plain JSON values (floats, ints, strings, lists, dicts, None). They also read like the dicts they
replace (``effect["full"]["asr"]``), so existing code keeps working.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from safecircuits.errors import DataFormatError
from safecircuits.io import read_json, write_json

__all__ = ["CircuitEffect", "CircuitResult", "FaithfulnessCurve", "RandomControl", "SeedStability"]


class CircuitResult:
    """Shared behaviour: dict-style reads, ``to_dict``, ``save`` and ``load``."""

    kind: ClassVar[str] = "result"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, default)
        return default if value is None else value

    def __contains__(self, key: str) -> bool:
        return getattr(self, key, None) is not None

    def keys(self) -> list[str]:
        return [k for k, v in self.to_dict().items() if v is not None]

    def save(self, path: str | Path) -> Path:
        """Write JSON (atomically) tagged with the result kind."""
        return write_json(path, {"format": f"safecircuits-{self.kind}/1", **self.to_dict()})

    @classmethod
    def load(cls, path: str | Path) -> Any:
        d = read_json(path, f"{cls.kind} file", f"pass a file written by {cls.__name__}.save")
        want = f"safecircuits-{cls.kind}/1"
        if d.pop("format", None) != want:
            raise DataFormatError(path, f"is not a {cls.kind} file (format {d.get('format')!r})", f"pass a file written by {cls.__name__}.save")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class CircuitEffect(CircuitResult):
    """Behaviour of the full model and with the circuit removed and/or alone (see ``circuit_effect``)."""

    full: dict[str, Any]
    circuit: dict[str, Any]
    prompts: dict[str, Any]
    ablation: str
    judge: str
    max_new_tokens: int
    remove: dict[str, Any] | None = None
    only: dict[str, Any] | None = None
    delta: dict[str, Any] = field(default_factory=dict)
    utility_kept: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = "circuit-effect"


@dataclass
class RandomControl(CircuitResult):
    """The circuit's effect against random circuits of equal size (see ``random_control``)."""

    circuit: dict[str, Any]
    random: dict[str, Any]
    z: dict[str, Any]
    full: dict[str, Any]
    n_draws: int
    seeds: list[int]
    ablation: str
    prompts: dict[str, Any]

    kind: ClassVar[str] = "random-control"


@dataclass
class FaithfulnessCurve(CircuitResult):
    """Behaviour as the circuit grows or shrinks along its ranking (see ``faithfulness_curve``)."""

    circuit: dict[str, Any]
    mode: str
    ablation: str
    prompts: dict[str, Any]
    fractions: list[float]
    sizes: list[int]
    n_heads: list[int]
    n_neurons: list[int]
    scored: dict[str, bool]
    asr: list[float | None]
    utility: list[float | None]
    harmless_exact_match: list[float | None]
    auc_asr: float | None = None
    auc_utility: float | None = None
    triggered_asr: list[float | None] | None = None
    auc_triggered_asr: float | None = None
    label: str | None = None

    kind: ClassVar[str] = "faithfulness-curve"

    def smallest_size(self, key: str = "asr", at_least: float = 0.9) -> int | None:
        """The smallest circuit size on the curve whose `key` reaches `at_least` (None if none does)."""
        values = getattr(self, key) or []
        hits = [s for s, v in zip(self.sizes, values, strict=True) if v is not None and v >= at_least]
        return min(hits) if hits else None


@dataclass
class SeedStability(CircuitResult):
    """Pairwise agreement of circuits found with different seeds (see ``seed_stability``)."""

    n: int
    seeds: list[Any]
    sizes: list[int]
    iou: list[list[float]]
    mean_iou: float
    min_iou: float
    heads_iou_mean: float
    neurons_iou_mean: float
    score_rank_corr_mean: float | None

    kind: ClassVar[str] = "seed-stability"
