"""The weight-delta safety subspace (SafeLoRA, Hsu et al. 2024, arXiv 2405.16833).

For every module ``i`` (a TransformerLens weight, e.g. ``blocks.0.attn.W_Q``), the alignment
delta ``V_i = W_aligned,i - W_base,i`` in the ``[d_out, d_in]`` view of
:func:`safecircuits.models.weights.as_matrix` is factorised by a rank-r truncated SVD
``V_i ~ U_i diag(S_i) Vh_i`` (``U [d_out, r]``, ``S [r]``, ``Vh [r, d_in]``). Only the factors are
kept: projections are computed as ``U (U^T delta)`` and never through a dense ``d x d`` projector.

* ``side="out"``: ``P(delta) = U U^T delta`` (the column space of V: the directions V writes to);
* ``side="in"``: ``P(delta) = delta Vh^T Vh`` (the row space: the directions V reads from);
* ``side="both"``: ``U U^T delta Vh^T Vh``.

SafeLoRA's criterion uses the *unnormalised* ``C_i = V_i V_i^T / ||V_i||_F``. From the SVD,
``V V^T = U diag(S^2) U^T`` and ``||V||_F = ||S||_2``, so with the rank-r factors
``C_i = U diag(S^2) U^T / ||S||_2`` (summing over the kept singular values). This equals the
exact C when r is the full rank ``min(d_out, d_in)``; for r below it, it is C of the rank-r
truncation of V. Nothing here mutates a model or an input tensor.
"""

from __future__ import annotations

import copy
import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from safecircuits.errors import InputError, InputTypeError, MissingKeyError, ShapeMismatchError
from safecircuits.models.weights import WEIGHT_KINDS, as_matrix, from_matrix, weight_kind, weight_names
from safecircuits.subspaces._io import load_bundle, save_bundle

FORMAT = "safecircuits-weight-delta-subspace/1"


def _unwrap(model: Any) -> tuple[HookedTransformer, str]:
    """A HookedTransformer and its name from a HookedTransformer or a LoadedModel."""
    if hasattr(model, "model") and isinstance(model.model, HookedTransformer):
        return model.model, model.name
    if isinstance(model, HookedTransformer):
        return model, model.cfg.model_name
    raise InputTypeError(f"expected a HookedTransformer or a LoadedModel, got {type(model).__name__}")


@dataclass
class WeightDeltaSubspace:
    """Per-module truncated SVD factors of ``W_aligned - W_base`` (see the module docstring).

    ``factors[name] = (U [d_out, r], S [r], Vh [r, d_in])`` in float32 on the CPU; ``shapes[name]``
    is the TransformerLens shape of the parameter; ``energy[name]`` the share of ``||V||_F^2``
    captured by the kept singular values; ``delta_norm[name]`` is ``||V||_F``.
    """

    factors: dict[str, tuple[Tensor, Tensor, Tensor]]
    shapes: dict[str, tuple[int, ...]]
    rank: int
    energy: dict[str, float] = field(default_factory=dict)
    delta_norm: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    @torch.no_grad()
    def from_models(
        cls,
        aligned: Any,
        base: Any,
        rank: int = 8,
        kinds: Iterable[str] = WEIGHT_KINDS,
        layers: Iterable[int] | None = None,
        progress: bool = False,
    ) -> WeightDeltaSubspace:
        """Factorise ``V_i = W_aligned,i - W_base,i`` for the weight matrices of `kinds` (and
        `layers`). `aligned` / `base` are HookedTransformers or LoadedModels. Neither is changed."""
        a_model, a_name = _unwrap(aligned)
        b_model, b_name = _unwrap(base)
        kinds = tuple(kinds)
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise InputError(f"rank must be a positive integer, got {rank!r}")
        names = weight_names(a_model, kinds, layers)
        if not names:
            raise InputError(f"{a_name} has no weight matrices of kinds {list(kinds)} (layers {layers}); pick other kinds or layers")
        a_params, b_params = dict(a_model.named_parameters()), dict(b_model.named_parameters())
        missing = [n for n in names if n not in b_params]
        if missing:
            raise ShapeMismatchError(f"the base model {b_name} has no parameters {missing[:4]}: the two models have different architectures")
        for n in names:
            if a_params[n].shape != b_params[n].shape:
                raise ShapeMismatchError(
                    f"{n} has shape {tuple(a_params[n].shape)} in {a_name} but {tuple(b_params[n].shape)} in {b_name}: "
                    "the aligned and base models must share an architecture (fine-tune one from the other)"
                )
        full = min(min(as_matrix(n, a_params[n]).shape) for n in names)
        if rank > full:
            raise InputError(f"rank {rank} is larger than the smallest module's full rank {full}: use --rank between 1 and {full}")
        factors, shapes, energy, dnorm = {}, {}, {}, {}
        for n in tqdm(names, desc="SVD of weight deltas", disable=not progress, leave=False):
            v = as_matrix(n, a_params[n].detach().double().cpu()) - as_matrix(n, b_params[n].detach().double().cpu())
            u, s, vh = torch.linalg.svd(v, full_matrices=False)
            tot = float((s**2).sum())
            factors[n] = (u[:, :rank].float().contiguous(), s[:rank].float().contiguous(), vh[:rank].float().contiguous())
            shapes[n] = tuple(a_params[n].shape)
            energy[n] = float((s[:rank] ** 2).sum()) / tot if tot > 0 else 0.0
            dnorm[n] = tot**0.5
        prov = {
            "method": "SafeLoRA weight-delta subspace, 2405.16833",
            "aligned": a_name,
            "base": b_name,
            "rank": rank,
            "kinds": list(kinds),
            "layers": None if layers is None else list(layers),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        return cls(factors, shapes, rank, energy, dnorm, prov)

    def truncate(self, rank: int) -> WeightDeltaSubspace:
        """The same subspace with only the top `rank` singular directions (no recomputation)."""
        if not 0 <= rank <= self.rank:
            raise InputError(f"rank must be between 0 and the computed rank {self.rank}, got {rank}")
        f = {n: (u[:, :rank], s[:rank], vh[:rank]) for n, (u, s, vh) in self.factors.items()}
        energy = {n: float((s**2).sum()) / self.delta_norm[n] ** 2 if self.delta_norm[n] > 0 else 0.0 for n, (_, s, _) in f.items()}
        return WeightDeltaSubspace(f, dict(self.shapes), rank, energy, dict(self.delta_norm), {**self.provenance, "rank": rank,
                                                                                                "truncated_from": self.rank})

    # -- access ---------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.factors)

    def _get(self, name: str) -> tuple[Tensor, Tensor, Tensor]:
        if name not in self.factors:
            raise MissingKeyError(f"{name!r} is not in this subspace; its modules are {self.names[:6]}{' ...' if len(self.names) > 6 else ''}")
        return self.factors[name]

    def basis(self, name: str) -> Float[Tensor, "d_out r"]:
        """Orthonormal output basis U of module `name` (the directions its delta writes to)."""
        return self._get(name)[0]

    def input_basis(self, name: str) -> Float[Tensor, "r d_in"]:
        """Orthonormal input basis Vh (rows) of module `name`."""
        return self._get(name)[2]

    def singular_values(self, name: str) -> Float[Tensor, " r"]:
        return self._get(name)[1]

    def matrix_shape(self, name: str) -> tuple[int, int]:
        u, _, vh = self._get(name)
        return u.shape[0], vh.shape[1]

    # -- projections ----------------------------------------------------------------------------
    def project(self, name: str, delta: Float[Tensor, "d_out d_in"], side: str = "out") -> Float[Tensor, "d_out d_in"]:
        """The part of `delta` ([d_out, d_in] matrix view) inside the subspace of module `name`."""
        u, _, vh = self._get(name)
        want = self.matrix_shape(name)
        if tuple(delta.shape) != want:
            raise ShapeMismatchError(
                f"{name}: delta has shape {tuple(delta.shape)} but the subspace expects the [d_out, d_in] matrix view {want}; "
                "convert TransformerLens tensors with project_param or models.weights.as_matrix"
            )
        u = u.to(device=delta.device, dtype=torch.float64)
        vh = vh.to(device=delta.device, dtype=torch.float64)
        x = delta.double()  # differentiable: usable inside a loss as well as on updates
        if side == "out":
            p = u @ (u.T @ x)
        elif side == "in":
            p = (x @ vh.T) @ vh
        elif side == "both":
            p = u @ ((u.T @ x) @ vh.T) @ vh
        else:
            raise InputError(f"side must be 'out', 'in' or 'both', got {side!r}")
        return p.to(delta.dtype)

    def project_out(self, name: str, delta: Float[Tensor, "d_out d_in"], side: str = "out") -> Float[Tensor, "d_out d_in"]:
        """The part of `delta` orthogonal to the subspace: ``delta - project(delta)``."""
        return (delta.double() - self.project(name, delta, side).double()).to(delta.dtype)

    def project_param(self, name: str, delta: Tensor, complement: bool = False, side: str = "out") -> Tensor:
        """Like :meth:`project` / :meth:`project_out`, for a delta in the TransformerLens layout of `name`."""
        shape = self.shapes[name] if name in self.shapes else None
        if shape is None:
            self._get(name)
        if tuple(delta.shape) != tuple(shape):  # type: ignore[arg-type]
            raise ShapeMismatchError(f"{name}: delta has shape {tuple(delta.shape)}, expected the parameter shape {shape}")
        m = as_matrix(name, delta)
        p = self.project_out(name, m, side) if complement else self.project(name, m, side)
        return from_matrix(name, p, delta.shape).contiguous()

    def output_directions(self, kinds: Iterable[str] = ("W_O", "W_out"), layers: Iterable[int] | None = None) -> Float[Tensor, "d_model k"]:
        """The output bases U of the modules that write to the residual stream (d_model rows),
        concatenated (not orthonormalised; geometry functions orthonormalise)."""
        from safecircuits.models.weights import layer_of

        kinds = set(kinds)
        layer_set = None if layers is None else set(layers)
        bad = kinds - {"W_O", "W_out"}
        if bad:
            raise InputError(f"only W_O and W_out write to the residual stream, not {sorted(bad)}")
        cols = [self.basis(n) for n in self.names if weight_kind(n) in kinds and (layer_set is None or layer_of(n) in layer_set)]
        if not cols:
            raise InputError(f"no {sorted(kinds)} modules (layers {layers}) in this subspace; its modules are {self.names}")
        return torch.cat(cols, dim=1)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Factors to safetensors (``.safetensors``) or ``.pt``, metadata as JSON; loads without models."""
        tensors = {}
        for n, (u, s, vh) in self.factors.items():
            tensors[f"{n}::U"], tensors[f"{n}::S"], tensors[f"{n}::Vh"] = u, s, vh
        meta = {"names": self.names, "shapes": {n: list(s) for n, s in self.shapes.items()}, "rank": self.rank,
                "energy": self.energy, "delta_norm": self.delta_norm, "provenance": self.provenance}
        return save_bundle(path, FORMAT, tensors, meta)

    @classmethod
    def load(cls, path: str | Path) -> WeightDeltaSubspace:
        t, m = load_bundle(path, FORMAT, "weight-delta subspace")
        factors = {n: (t[f"{n}::U"], t[f"{n}::S"], t[f"{n}::Vh"]) for n in m["names"]}
        return cls(factors, {n: tuple(s) for n, s in m["shapes"].items()}, m["rank"], m["energy"], m["delta_norm"], m["provenance"])

    def __repr__(self) -> str:
        e = sum(self.energy.values()) / max(len(self.energy), 1)
        return (f"WeightDeltaSubspace({len(self.names)} modules, rank {self.rank}, mean energy captured {e:.3f}, "
                f"aligned={self.provenance.get('aligned')}, base={self.provenance.get('base')})")


# -- SafeLoRA ---------------------------------------------------------------------------------------
def _c_apply(sub: WeightDeltaSubspace, name: str, delta: Tensor) -> Tensor:
    """``C delta`` with ``C = U diag(S^2) U^T / ||S||_2`` (SafeLoRA's unnormalised projection)."""
    u, s, _ = sub._get(name)
    u, s = u.double().to(delta.device), s.double().to(delta.device)
    ns = s.norm()
    if ns == 0:
        return torch.zeros_like(delta.double())
    return u @ ((s**2 / ns)[:, None] * (u.T @ delta.double()))


def safelora_cosines(sub: WeightDeltaSubspace, deltas: Mapping[str, Tensor]) -> dict[str, float]:
    """SafeLoRA's similarity ``cos(C_i dW_i, dW_i)`` (Frobenius) per module, for matrix-view deltas."""
    out = {}
    for name, d in deltas.items():
        if tuple(d.shape) != sub.matrix_shape(name):
            raise ShapeMismatchError(f"{name}: delta has shape {tuple(d.shape)}, expected the matrix view {sub.matrix_shape(name)}")
        x = d.detach().double()
        cx = _c_apply(sub, name, x)
        den = float(cx.norm() * x.norm())
        out[name] = float((cx * x).sum()) / den if den > 0 else 0.0
    return out


def safelora_project(
    sub: WeightDeltaSubspace,
    deltas: Mapping[str, Tensor],
    tau: float | None = None,
    k: int | None = None,
    projector: str = "safelora",
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """SafeLoRA post-hoc projection: new deltas (inputs untouched) and a report.

    Modules whose cosine is ``<= tau`` (or the `k` with the lowest cosine) are replaced by
    ``C_i dW_i`` (``projector="safelora"``, the paper's unnormalised C) or ``U U^T dW_i``
    (``"orthogonal"``); the others are returned as copies.
    """
    if (tau is None) == (k is None):
        raise InputError("pass exactly one of tau (cosine threshold) or k (number of modules to project)")
    if k is not None and not 0 <= k <= len(deltas):
        raise InputError(f"k must be between 0 and the number of deltas ({len(deltas)}), got {k}")
    if projector not in ("safelora", "orthogonal"):
        raise InputError(f"projector must be 'safelora' or 'orthogonal', got {projector!r}")
    cos = safelora_cosines(sub, deltas)
    if tau is not None:
        chosen = {n for n, c in cos.items() if c <= tau}
    else:
        chosen = set(sorted(cos, key=lambda n: cos[n])[:k])
    new: dict[str, Tensor] = {}
    for n, d in deltas.items():
        if n in chosen:
            p = _c_apply(sub, n, d) if projector == "safelora" else sub.project(n, d.double(), "out")
            new[n] = p.to(d.dtype).detach()
        else:
            new[n] = d.detach().clone()
    report = {"cosines": cos, "projected": sorted(chosen), "tau": tau, "k": k, "projector": projector, "rank": sub.rank}
    return new, report


@torch.no_grad()
def apply_delta_projection(
    aligned: Any, base: Any, sub: WeightDeltaSubspace, mode: str = "keep", side: str = "out"
) -> HookedTransformer:
    """A new model: a copy of `aligned` whose subspace modules are ``W_base + P(V)`` (``keep``) or
    ``W_base + (V - P(V)) = W_aligned - P(V)`` (``remove``), with ``V = W_aligned - W_base`` exact
    and P the projection onto the subspace (`side`). Neither input model is changed."""
    if mode not in ("keep", "remove"):
        raise InputError(f"mode must be 'keep' or 'remove', got {mode!r}")
    a_model, _ = _unwrap(aligned)
    b_model, _ = _unwrap(base)
    new = copy.deepcopy(a_model)
    params = dict(new.named_parameters())
    b_params = dict(b_model.named_parameters())
    for n in sub.names:
        if n not in params or n not in b_params or params[n].shape != b_params[n].shape or tuple(params[n].shape) != tuple(sub.shapes[n]):
            raise ShapeMismatchError(f"{n}: the models do not match the subspace's shape {sub.shapes[n]}")
        wa, wb = params[n].data, b_params[n].data
        v = as_matrix(n, (wa.double() - wb.double()))
        p = sub.project(n, v, side) if sub.rank > 0 else torch.zeros_like(v)
        m = as_matrix(n, wb.double()) + (p if mode == "keep" else v - p)
        params[n].data.copy_(from_matrix(n, m, wa.shape).to(wa.dtype))
    return new
