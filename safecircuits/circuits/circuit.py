"""The Circuit: which heads and neurons, how strongly, and how it was found."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from safecircuits.circuits.hooks import AblationType, Ablator, masked
from safecircuits.errors import InputError, MissingFileError, ShapeMismatchError
from safecircuits.types import HookedModel

FORMAT = "safecircuits-circuit/1"


@dataclass
class Circuit:
    """Boolean membership of heads and neurons, their scores, and provenance.

    ``heads[l, h]`` / ``neurons[l, i]`` are True for components *in the circuit*. ``head_scores``
    / ``neuron_scores`` rank components: higher = more strongly in the circuit (for mask methods,
    1 - final keep probability). Either family may be None when it was switched off.
    """

    heads: Bool[Tensor, "n_layers n_heads"]
    neurons: Bool[Tensor, "n_layers d_mlp"]
    head_scores: Float[Tensor, "n_layers n_heads"] | None = None
    neuron_scores: Float[Tensor, "n_layers d_mlp"] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.heads = self.heads.bool().cpu()
        self.neurons = self.neurons.bool().cpu()
        if self.heads.ndim != 2 or self.neurons.ndim != 2 or self.heads.shape[0] != self.neurons.shape[0]:
            raise ShapeMismatchError(
                f"heads {tuple(self.heads.shape)} and neurons {tuple(self.neurons.shape)} must be [n_layers, n] with the same n_layers"
            )
        for name in ("head_scores", "neuron_scores"):
            s = getattr(self, name)
            ref = self.heads if name == "head_scores" else self.neurons
            if s is not None:
                s = s.detach().float().cpu()
                if s.shape != ref.shape:
                    raise ShapeMismatchError(f"{name} has shape {tuple(s.shape)}, expected {tuple(ref.shape)}")
                setattr(self, name, s)

    # -- shape ----------------------------------------------------------------------------------
    @property
    def shape(self) -> dict[str, int]:
        return {"n_layers": self.heads.shape[0], "n_heads": self.heads.shape[1], "d_mlp": self.neurons.shape[1]}

    def check_model(self, model: HookedModel) -> None:
        c = model.cfg
        want = {"n_layers": c.n_layers, "n_heads": c.n_heads, "d_mlp": c.d_mlp}
        if want != self.shape:
            src = self.provenance.get("model", "?")
            raise ShapeMismatchError(
                f"circuit found on {src} has shape {self.shape} but the model {c.model_name!r} has shape {want}; "
                "load the circuit onto the model it was found on"
            )

    def _check_same(self, other: Circuit) -> None:
        if self.shape != other.shape:
            raise ShapeMismatchError(f"circuits have different shapes: {self.shape} vs {other.shape}")

    # -- measures -------------------------------------------------------------------------------
    @property
    def validated(self) -> bool | None:
        """Whether removing the circuit changed the behaviour on validation prompts (None: not checked)."""
        v = self.provenance.get("validation")
        return None if not v else bool(v.get("validated"))

    @property
    def n_heads(self) -> int:
        return int(self.heads.sum())

    @property
    def n_neurons(self) -> int:
        return int(self.neurons.sum())

    @property
    def n_components(self) -> int:
        return self.n_heads + self.n_neurons

    @property
    def total_components(self) -> int:
        return self.heads.numel() + self.neurons.numel()

    @property
    def sparsity(self) -> dict[str, float]:
        """Share of components in the circuit: heads, neurons, and overall."""
        return {
            "heads": self.n_heads / self.heads.numel(),
            "neurons": self.n_neurons / max(self.neurons.numel(), 1),
            "overall": self.n_components / self.total_components,
        }

    def iou(self, other: Circuit) -> float:
        self._check_same(other)
        inter = (self.heads & other.heads).sum() + (self.neurons & other.neurons).sum()
        union = (self.heads | other.heads).sum() + (self.neurons | other.neurons).sum()
        return float(inter) / float(union) if union > 0 else 1.0

    def _combine(self, other: Circuit, op: str) -> Circuit:
        self._check_same(other)
        f = {"union": torch.logical_or, "intersection": torch.logical_and, "difference": lambda a, b: a & ~b}[op]
        return Circuit(
            f(self.heads, other.heads),
            f(self.neurons, other.neurons),
            provenance={"op": op, "left": self.provenance, "right": other.provenance},
        )

    def union(self, other: Circuit) -> Circuit:
        return self._combine(other, "union")

    def intersection(self, other: Circuit) -> Circuit:
        return self._combine(other, "intersection")

    def difference(self, other: Circuit) -> Circuit:
        return self._combine(other, "difference")

    __or__ = union
    __and__ = intersection
    __sub__ = difference

    def top_k(self, n_heads: int, n_neurons: int) -> Circuit:
        """The circuit made of the `n_heads` / `n_neurons` highest-scoring components."""
        if self.head_scores is None or self.neuron_scores is None:
            raise InputError("top_k needs scores; this circuit has none (e.g. it came from a set operation)")
        heads = _top(self.head_scores, n_heads)
        neurons = _top(self.neuron_scores, n_neurons)
        return Circuit(heads, neurons, self.head_scores, self.neuron_scores, {**self.provenance, "top_k": [n_heads, n_neurons]})

    def components(self) -> list[str]:
        """Readable names: 'L1H3', 'L0N17'."""
        out = [f"L{l}H{h}" for l, h in self.heads.nonzero().tolist()]
        out += [f"L{l}N{n}" for l, n in self.neurons.nonzero().tolist()]
        return out

    def component_names(self, limit: int | None = None, order: Literal["score", "index"] = "score") -> list[str]:
        """The circuit's components as ``L{layer}H{head}`` and ``L{layer}N{neuron}``: heads first, then neurons.

        ``order="score"`` lists each family by descending score (index order for a family without
        scores, and for ties); ``"index"`` by layer, then index, like :meth:`components`. With
        ``limit``, at most that many names (the first ones of that order). See
        :meth:`components_summary` for one line with the count of the rest.
        """
        if limit is not None and limit < 0:
            raise InputError(f"limit must be >= 0 or None, got {limit}")
        if order not in ("score", "index"):
            raise InputError(f"unknown order {order!r}: use 'score' or 'index'")
        out: list[str] = []
        for member, scores, kind in ((self.heads, self.head_scores, "H"), (self.neurons, self.neuron_scores, "N")):
            idx = member.flatten().nonzero().flatten()
            if order == "score" and scores is not None and idx.numel():
                idx = idx[torch.argsort(scores.flatten()[idx], descending=True, stable=True)]
            if limit is not None:
                idx = idx[: max(limit - len(out), 0)]
            width = member.shape[1]
            out += [f"L{i // width}{kind}{i % width}" for i in idx.tolist()]
        return out

    def components_summary(self, limit: int = 12, order: Literal["score", "index"] = "score") -> str:
        """One line naming the circuit's components, e.g. ``"L0H1, L1H3, L0N32 (+1204 more)"``
        (``"(empty circuit)"`` when it has none); the first ``limit`` of :meth:`component_names`."""
        names = self.component_names(limit, order)
        if not names and self.n_components == 0:
            return "(empty circuit)"
        rest = self.n_components - len(names)
        more = [f"(+{rest} more)"] if rest > 0 else []
        return " ".join([", ".join(names)] * bool(names) + more)

    def __repr__(self) -> str:
        sp = self.sparsity
        return (
            f"Circuit({self.n_heads} heads, {self.n_neurons} neurons; sparsity heads {100 * sp['heads']:.2f}%, "
            f"neurons {100 * sp['neurons']:.2f}%, overall {100 * sp['overall']:.2f}%; "
            f"objective={self.provenance.get('objective')}, model={self.provenance.get('model')})"
        )

    # -- intervention ---------------------------------------------------------------------------
    def keep_masks(self, mode: Literal["remove", "only"] = "remove") -> tuple[Tensor, Tensor]:
        """{0,1} keep masks: `remove` ablates the circuit; `only` ablates everything else."""
        if mode == "remove":
            return (~self.heads).float(), (~self.neurons).float()
        if mode == "only":
            return self.heads.float(), self.neurons.float()
        raise InputError(f"unknown mode {mode!r}: use 'remove' or 'only'")

    @contextmanager
    def ablate(
        self,
        model: HookedModel,
        mode: Literal["remove", "only"] = "remove",
        ablation: AblationType | str | Ablator = AblationType.ZERO,
    ) -> Iterator[HookedModel]:
        """Context manager: the model with the circuit removed (or alone). Hooks go on exit, even on error.

        ``ablation`` is ``zero``, or a ready :class:`Ablator` for ``mean`` / ``resample`` (built with
        ``Ablator.build(model, chat, "mean", reference_prompts)``).
        """
        self.check_model(model)
        if isinstance(ablation, Ablator):
            ablator: Ablator | None = ablation
        else:
            kind = AblationType.parse(ablation)
            if kind != AblationType.ZERO:
                raise InputError(f"{kind.value} ablation needs reference activations: pass Ablator.build(model, chat, {kind.value!r}, prompts)")
            ablator = None
        heads, neurons = self.keep_masks(mode)
        dev = model.cfg.device
        with masked(model, heads.to(dev), neurons.to(dev), ablator) as m:
            yield m

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "shape": self.shape,
            "heads": self.heads.nonzero().tolist(),
            "neurons": self.neurons.nonzero().tolist(),
            "head_scores": None if self.head_scores is None else [[round(x, 6) for x in r] for r in self.head_scores.tolist()],
            "neuron_scores": None if self.neuron_scores is None else [[round(x, 6) for x in r] for r in self.neuron_scores.tolist()],
            "sparsity": self.sparsity,
            "components": self.components(),
            "provenance": self.provenance,
        }

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, default=_json_default))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Circuit:
        if d.get("format") != FORMAT:
            raise InputError(f"not a safecircuits circuit (format {d.get('format')!r}, expected {FORMAT!r})")
        s = d["shape"]
        heads = torch.zeros(s["n_layers"], s["n_heads"], dtype=torch.bool)
        neurons = torch.zeros(s["n_layers"], s["d_mlp"], dtype=torch.bool)
        for l, h in d["heads"]:
            heads[l, h] = True
        for l, n in d["neurons"]:
            neurons[l, n] = True
        hs = torch.tensor(d["head_scores"]) if d.get("head_scores") is not None else None
        ns = torch.tensor(d["neuron_scores"]) if d.get("neuron_scores") is not None else None
        return cls(heads, neurons, hs, ns, d.get("provenance", {}))

    @classmethod
    def from_json(cls, path: str | Path) -> Circuit:
        path = Path(path)
        if not path.exists():
            raise MissingFileError(f"circuit file {path} does not exist")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise InputError(f"{path}: not a safecircuits circuit (format {got!r}, expected {FORMAT!r})")
        try:
            return cls.from_dict(d)
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise InputError(f"{path}: malformed circuit file ({type(e).__name__}: {e}); write it again with `safecircuits discover`") from None

    def save(self, path: str | Path) -> Path:
        """Save as .pt (tensors kept exactly) or .json, by suffix."""
        path = Path(path)
        if path.suffix == ".json":
            return self.to_json(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"format": FORMAT, "heads": self.heads, "neurons": self.neurons, "head_scores": self.head_scores,
                    "neuron_scores": self.neuron_scores, "provenance": json.loads(json.dumps(self.provenance, default=_json_default))}, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        path = Path(path)
        if path.suffix == ".json":
            return cls.from_json(path)
        if not path.exists():
            raise MissingFileError(f"circuit file {path} does not exist")
        try:
            d = torch.load(path, weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means "not our file"
            raise InputError(f"{path}: not a safecircuits circuit file ({type(e).__name__}: {e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise InputError(f"{path}: not a safecircuits circuit")
        return cls(d["heads"], d["neurons"], d["head_scores"], d["neuron_scores"], d["provenance"])


def _top(scores: Tensor, k: int) -> Tensor:
    out = torch.zeros(scores.numel(), dtype=torch.bool)
    if k > 0:
        out[torch.argsort(scores.flatten(), descending=True, stable=True)[:k]] = True
    return out.view(scores.shape)


def _json_default(o: Any) -> Any:
    if isinstance(o, Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "value"):
        return o.value
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
