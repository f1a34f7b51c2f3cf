"""Geometry of subspaces of one space (e.g. d_model): principal angles and overlap.

* :func:`principal_angles`: orthonormalise A and B with QR; the singular values of ``Qa^T Qb``
  are the cosines of the principal angles (Björck and Golub 1973), largest first.
* :func:`overlap`: ``||Qa^T Qb||_F^2 / min(k_a, k_b)`` = the mean squared cosine of the principal
  angles, in [0, 1] (1 = one space contains the other). Two random subspaces of dimensions
  ``k_a, k_b`` in ``R^d`` overlap ``max(k_a, k_b) / d`` in expectation (:func:`chance_overlap`).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from safecircuits.errors import InputError, MissingFileError
from safecircuits.subspaces._io import json_default

FORMAT = "safecircuits-geometry-report/1"


def orthonormal_basis(a: Float[Tensor, "d ..."], tol: float = 1e-8) -> Float[Tensor, "d r"]:
    """Orthonormal basis of the column span of `a` (float64; rank-deficient columns dropped)."""
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] == 0:
        raise InputError(f"a subspace must be given as a [d, k] tensor with k >= 1, got shape {tuple(a.shape)}")
    u, s, _ = torch.linalg.svd(a.detach().double().cpu(), full_matrices=False)
    keep = s > tol * max(float(s.max()), 1e-300)
    if not bool(keep.any()):
        raise InputError("the subspace is zero (all columns vanish)")
    return u[:, keep]


def _qr(a: Tensor) -> Tensor:
    if a.ndim == 1:
        a = a[:, None]
    q, r = torch.linalg.qr(a.detach().double().cpu())
    diag = r.diagonal().abs()
    if diag.numel() and float(diag.min()) < 1e-10 * max(float(diag.max()), 1e-300):
        return orthonormal_basis(a)  # rank deficient: fall back to SVD
    return q


def principal_angles(a: Float[Tensor, "d ..."], b: Float[Tensor, "d ..."]) -> tuple[Float[Tensor, " k"], Float[Tensor, " k"]]:
    """(cosines, angles in radians) of the principal angles between span(a) and span(b), largest cosine first."""
    a = a[:, None] if a.ndim == 1 else a
    b = b[:, None] if b.ndim == 1 else b
    if a.shape[0] != b.shape[0]:
        raise InputError(f"subspaces live in different spaces: {a.shape[0]} vs {b.shape[0]} rows; give both as [d, k]")
    qa, qb = _qr(a), _qr(b)
    cos = torch.linalg.svdvals(qa.T @ qb).clamp(0.0, 1.0)
    return cos, torch.arccos(cos)


def overlap(a: Float[Tensor, "d ..."], b: Float[Tensor, "d ..."]) -> float:
    """Mean squared cosine of the principal angles: ``||Qa^T Qb||_F^2 / min(k_a, k_b)``."""
    cos, _ = principal_angles(a, b)
    return float((cos**2).sum() / cos.numel())


def chance_overlap(d: int, ka: int, kb: int) -> float:
    """Expected :func:`overlap` of independent uniformly random subspaces of dimensions ka, kb in R^d."""
    return max(ka, kb) / d


@dataclass
class GeometryReport:
    """Pairwise overlaps and principal-angle cosines of named subspaces (JSON save/load)."""

    names: list[str]
    dims: dict[str, int]
    d: int
    overlap: list[list[float]]
    cosines: dict[str, list[float]]
    chance: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)

    def pair(self, a: str, b: str) -> float:
        return self.overlap[self.names.index(a)][self.names.index(b)]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, default=json_default))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GeometryReport:
        path = Path(path)
        if not path.exists():
            raise MissingFileError(f"geometry report {path} does not exist")
        d = json.loads(path.read_text())
        if d.pop("format", None) != FORMAT:
            raise InputError(f"{path}: not a safecircuits geometry report")
        return cls(**d)


def geometry_report(spaces: dict[str, Tensor], provenance: dict[str, Any] | None = None) -> GeometryReport:
    """Pairwise geometry of named subspaces, each a ``[d, k]`` tensor (or a ``[d]`` direction) of
    the same d. Columns need not be orthonormal (they are orthonormalised)."""
    if len(spaces) < 2:
        raise InputError(f"geometry_report needs at least two subspaces, got {len(spaces)}")
    bases = {n: orthonormal_basis(s) for n, s in spaces.items()}
    ds = {n: b.shape[0] for n, b in bases.items()}
    if len(set(ds.values())) != 1:
        raise InputError(f"subspaces live in different spaces (rows per subspace: {ds}); give all as [d_model, k]")
    names = list(bases)
    d = next(iter(ds.values()))
    ov = [[0.0] * len(names) for _ in names]
    cosines, chance = {}, {}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if j < i:
                ov[i][j] = ov[j][i]
                continue
            cos = torch.linalg.svdvals(bases[a].T @ bases[b]).clamp(0, 1)
            ov[i][j] = float((cos**2).sum() / cos.numel())
            if j > i:
                key = f"{a} | {b}"
                cosines[key] = [round(float(c), 6) for c in cos]
                chance[key] = chance_overlap(d, bases[a].shape[1], bases[b].shape[1])
    return GeometryReport(names, {n: b.shape[1] for n, b in bases.items()}, d, ov, cosines, chance,
                          {**(provenance or {}), "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})
