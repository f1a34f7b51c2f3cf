"""Post-hoc corrections of a trained LoRA adapter: SafeLoRA and CSULoRA.

Both act on the merged low-rank deltas ``{param name: ΔW in TransformerLens layout}`` after
training, in the ``[d_out, d_in]`` matrix view of :mod:`safecircuits.models.weights`, against the
alignment delta ``V_i = W_aligned,i - W_base,i`` (``ctx.artifacts["subspace"]``). Neither mutates its
input. The same module holds the small adapter from a subspace artifact to per-weight factors
(top singular vectors of V_i) that CWAC shares.

**SafeLoRA** (Hsu et al., arXiv 2405.16833; code github.com/IBM/SafeLoRA). ``C_i = V_i V_i^T / ||V_i||_F``;
``ΔW_i <- C_i ΔW_i`` in the layers where ``cos(C_i ΔW_i, ΔW_i) <= τ`` (or the ``k`` layers with the
lowest cosine). With the rank-r SVD ``V_i ≈ U S W^T``, ``C_i x = U (S² / ||V_i||_F) U^T x`` (no d x d
matrix). This is the reference code's C (not an orthogonal projector: it also rescales).

**CSULoRA** (Closest Safe Update LoRA, arXiv 2605.30640; closed form ours, docs/finetune.md). With
orthonormal bases U (output) and V (input) of the alignment delta, write ``P_U = U U^T``, ``P_V = V V^T``
and split ``ΔW = F + P + O``::

    F = P_U ΔW P_V                                     (fully aligned: reads and writes the alignment map)
    P = P_U ΔW (I - P_V) + (I - P_U) ΔW P_V            (partially aligned)
    O = (I - P_U) ΔW (I - P_V)                         (off-subspace)

The three parts are Frobenius-orthogonal, so the penalised minimum-change problem

    min_{ΔW'} ||ΔW' - ΔW||² + μ Σ_{X ∈ attenuated} ρ_X ||X(ΔW')||²,   ρ_X = ||X(ΔW)||² / ||ΔW||²

separates per part and has the closed form ``X' = X / (1 + μ ρ_X)`` for attenuated parts and
``X' = X`` for kept ones. Which parts are "safe" is the ``keep`` option: ``keep="off"`` (our
default) keeps O and attenuates F and P: a harmful update undoes refusal by moving the weights
back along the alignment map (the F and P parts), and energy weighting shrinks those parts only
when the update concentrates there, so a benign update (mostly O) passes almost unchanged.
``keep="aligned"`` is the literal reading (keep F, attenuate P and O, SafeLoRA-like).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from safecircuits.errors import InputError, InputTypeError
from safecircuits.finetune.base import FinetuneContext, Method
from safecircuits.models.weights import as_matrix, from_matrix

__all__ = ["CSULoRA", "SafeLoRA", "csulora_matrix", "csulora_parts", "factors_for", "residual_basis"]


# -- subspace factors ---------------------------------------------------------------------------
def _subspace(sub: Any, rank: int | None = None):
    """The WeightDeltaSubspace artifact (truncated to `rank` when smaller than its own)."""
    from safecircuits.subspaces import WeightDeltaSubspace

    if not isinstance(sub, WeightDeltaSubspace):
        raise InputTypeError(f"the 'subspace' artifact must be a WeightDeltaSubspace (WeightDeltaSubspace.from_models(aligned, base, rank=r) "
                        f"or .load(path)), got {type(sub).__name__}")
    if rank is not None and rank < sub.rank:
        return sub.truncate(rank)
    return sub


def factors_for(sub: Any, names: Iterable[str], rank: int | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    """``{name: (U [d_out, r], V [d_in, r])}`` orthonormal output/input bases for the names the subspace covers."""
    sub = _subspace(sub, rank)
    out = {n: (sub.basis(n), sub.input_basis(n).T) for n in names if n in sub.factors}
    if not out:
        raise InputError("the subspace artifact covers none of the model's weights: was it built for this model?")
    return out


def residual_basis(art: Any, k: int | None = None) -> Float[Tensor, "d_model k"]:
    """An orthonormal ``[d_model, k]`` residual basis from an ActivationSubspace, a RefusalDirection
    (``.direction``) or a tensor ([d_model] or [d_model, k]); first `k` columns (None = all)."""
    from safecircuits.subspaces.geometry import orthonormal_basis

    b = art
    for attr in ("basis", "direction"):
        if hasattr(art, attr):
            b = getattr(art, attr)
            break
    if not isinstance(b, Tensor):
        raise InputTypeError(f"cannot read a residual basis from {type(art).__name__}: give a [d_model, k] tensor or an ActivationSubspace")
    if b.ndim == 1:
        b = b[:, None]
    return orthonormal_basis(b[:, :k].double()).float()


# -- SafeLoRA -----------------------------------------------------------------------------------
class SafeLoRA(Method):
    """SafeLoRA: project LoRA deltas with C_i = V_i V_i^T / ||V_i||_F where cos(C ΔW, ΔW) <= τ.

    Runs :func:`safecircuits.subspaces.safelora_project` on the matrix views of the merged deltas.
    """

    name: ClassVar[str] = "safelora"
    mode: ClassVar[Literal["full", "lora"]] = "lora"
    needs: ClassVar[tuple[str, ...]] = ("subspace",)
    source: ClassVar[str] = "arXiv 2405.16833 (SafeLoRA); code github.com/IBM/SafeLoRA"
    defaults: ClassVar[dict[str, Any]] = {"tau": 0.5, "k": None, "rank": 8}

    def __init__(self, **hparams: Any):
        bad = set(hparams) - set(self.defaults)
        if bad:
            raise InputError(f"{self.name}: unknown hyperparameters {sorted(bad)}; use some of {sorted(self.defaults)}")
        h = {**self.defaults, **hparams}
        if h["k"] is not None and "tau" not in hparams:
            h["tau"] = None
        if (h["tau"] is None) == (h["k"] is None):
            raise InputError(f"{self.name}: give exactly one of tau (cosine threshold) or k (number of modules to project)")
        super().__init__(**h)

    def post_hoc(self, ctx: FinetuneContext, deltas: dict[str, Tensor]) -> dict[str, Tensor]:
        from safecircuits.subspaces import safelora_project

        sub = ctx.artifacts.get("subspace")
        if sub is None:
            raise InputError("safelora: needs ctx.artifacts['subspace'] (the alignment delta of aligned vs base)")
        sub = _subspace(sub, int(self.hparams["rank"]))
        mats = {n: as_matrix(n, d.detach()) for n, d in deltas.items() if n in sub.factors}
        k = self.hparams["k"]
        new, report = safelora_project(sub, mats, tau=self.hparams["tau"], k=None if k is None else min(int(k), len(mats)))
        out = {n: (from_matrix(n, new[n], d.shape).contiguous().clone() if n in new else d.detach().clone()) for n, d in deltas.items()}
        ctx.state["safelora"] = report
        return out


# -- CSULoRA ------------------------------------------------------------------------------------
def csulora_parts(
    m: Float[Tensor, "d_out d_in"], u: Float[Tensor, "d_out r"], v: Float[Tensor, "d_in r2"]
) -> dict[str, Float[Tensor, "d_out d_in"]]:
    """The fully aligned (F), partially aligned (P) and off-subspace (O) parts; F + P + O = m."""
    pu_m = u @ (u.T @ m)  # P_U m
    f = (pu_m @ v) @ v.T  # P_U m P_V
    m_pv = (m @ v) @ v.T  # m P_V
    o = m - pu_m - m_pv + f  # (I - P_U) m (I - P_V)
    p = m - f - o
    return {"F": f, "P": p, "O": o}


def csulora_matrix(
    m: Float[Tensor, "d_out d_in"], u: Float[Tensor, "d_out r"], v: Float[Tensor, "d_in r2"], mu: float = 30.0,
    keep: Literal["off", "aligned"] = "off",
) -> tuple[Float[Tensor, "d_out d_in"], dict[str, float]]:
    """Closed-form CSULoRA correction of one matrix; returns (ΔW', {part: shrink factor})."""
    if mu < 0:
        raise InputError(f"mu must be >= 0, got {mu}")
    if keep not in ("off", "aligned"):
        raise InputError(f"keep must be 'off' (keep the off-subspace part) or 'aligned' (keep the fully aligned part), got {keep!r}")
    parts = csulora_parts(m, u.to(m.dtype), v.to(m.dtype))
    total = float(m.pow(2).sum())
    kept = "O" if keep == "off" else "F"
    factors = {}
    out = torch.zeros_like(m)
    for key, x in parts.items():
        rho = float(x.pow(2).sum()) / total if total > 0 else 0.0
        factors[key] = 1.0 if key == kept else 1.0 / (1.0 + mu * rho)
        out = out + factors[key] * x
    return out, factors


class CSULoRA(Method):
    """CSULoRA: closest safe update, attenuating the unsafe parts of each LoRA delta by their energy."""

    name: ClassVar[str] = "csulora"
    mode: ClassVar[Literal["full", "lora"]] = "lora"
    needs: ClassVar[tuple[str, ...]] = ("subspace",)
    source: ClassVar[str] = "arXiv 2605.30640 (CSULoRA); closed form ours, see docs/finetune.md"
    defaults: ClassVar[dict[str, Any]] = {"mu": 30.0, "keep": "off", "rank": 8}

    def __init__(self, **hparams: Any):
        bad = set(hparams) - set(self.defaults)
        if bad:
            raise InputError(f"{self.name}: unknown hyperparameters {sorted(bad)}; use some of {sorted(self.defaults)}")
        super().__init__(**{**self.defaults, **hparams})

    def post_hoc(self, ctx: FinetuneContext, deltas: dict[str, Tensor]) -> dict[str, Tensor]:
        sub = ctx.artifacts.get("subspace")
        if sub is None:
            raise InputError("csulora: needs ctx.artifacts['subspace'] (the alignment delta of aligned vs base)")
        bases = factors_for(sub, deltas, int(self.hparams["rank"]))
        out, info = {}, {}
        for name, d in deltas.items():
            if name not in bases:
                out[name] = d.detach().clone()
                continue
            u, v = bases[name]
            m2, fac = csulora_matrix(as_matrix(name, d.detach()), u, v, float(self.hparams["mu"]), self.hparams["keep"])
            out[name] = from_matrix(name, m2, d.shape).contiguous()
            info[name] = fac
        ctx.state["csulora"] = info
        return out
