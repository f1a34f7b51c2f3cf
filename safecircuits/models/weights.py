"""One matrix view of TransformerLens's einsum weight tensors.

TransformerLens stores attention and MLP weights in einsum layouts, not as ``nn.Linear``
matrices: ``W_Q [n_heads, d_model, d_head]``, ``W_O [n_heads, d_head, d_model]``,
``W_in [d_model, d_mlp]``, ``W_out [d_mlp, d_model]``; grouped-query models store keys and values
as ``_W_K``/``_W_V [n_kv_heads, d_model, d_head]``. Subspaces (SafeLoRA, CWAC, CSULoRA), LoRA and
Safety Circuit Tuning all need the same thing: each weight as a matrix ``[d_out, d_in]`` in the
``nn.Linear`` convention (``y = M x``), and the way back. This module is that single place.

* attention in-projections (W_Q, W_K, W_V and GQA's _W_K, _W_V): rows are ``(head, d_head)``
  pairs, head-major, so head ``h`` owns rows ``h*d_head:(h+1)*d_head``; columns are ``d_model``.
* W_O: rows are ``d_model``; columns are ``(head, d_head)``, head ``h`` owns its column block.
* W_in / W_gate: rows are neurons, columns ``d_model``. W_out: rows ``d_model``, columns neurons.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from safecircuits.errors import InputError

WEIGHT_KINDS: tuple[str, ...] = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_gate", "W_out")
_IN_PROJ = ("W_Q", "W_K", "W_V", "_W_K", "_W_V")


def weight_kind(name: str) -> str:
    """``blocks.3.attn._W_K`` -> ``W_K``; raises for names that are not layer weight matrices."""
    leaf = name.rsplit(".", 1)[-1]
    kind = leaf.lstrip("_")
    if kind not in WEIGHT_KINDS:
        raise InputError(f"{name!r} is not a layer weight matrix: the last part must be one of {', '.join(WEIGHT_KINDS)}")
    return kind


def layer_of(name: str) -> int:
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit():
        raise InputError(f"{name!r} is not a per-layer parameter name (expected 'blocks.<layer>.<module>.<weight>')")
    return int(parts[1])


def as_matrix(name: str, w: Tensor) -> Tensor:
    """The ``[d_out, d_in]`` view of a TransformerLens weight tensor (a copy where a permute is needed)."""
    kind = weight_kind(name)
    if kind in ("W_Q", "W_K", "W_V"):
        h, d_model, d_head = w.shape
        return w.permute(0, 2, 1).reshape(h * d_head, d_model)
    if kind == "W_O":
        h, d_head, d_model = w.shape
        return w.reshape(h * d_head, d_model).T
    return w.T  # W_in, W_gate [d_model, d_mlp] and W_out [d_mlp, d_model]


def from_matrix(name: str, m: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """Inverse of :func:`as_matrix`: the ``[d_out, d_in]`` matrix back in TransformerLens layout `shape`."""
    kind = weight_kind(name)
    if kind in ("W_Q", "W_K", "W_V"):
        h, d_model, d_head = shape
        return m.reshape(h, d_head, d_model).permute(0, 2, 1)
    if kind == "W_O":
        h, d_head, d_model = shape
        return m.T.reshape(h, d_head, d_model)
    return m.T


def weight_names(model: nn.Module, kinds: Iterable[str] = WEIGHT_KINDS, layers: Iterable[int] | None = None) -> list[str]:
    """Parameter names of the layer weight matrices of `kinds` (GQA's ``_W_K`` included for ``W_K``)."""
    kinds = set(kinds)
    bad = kinds - set(WEIGHT_KINDS)
    if bad:
        raise InputError(f"unknown weight kinds {sorted(bad)}: use some of {', '.join(WEIGHT_KINDS)}")
    layer_set = None if layers is None else set(layers)
    out = []
    for name, _ in model.named_parameters():
        try:
            kind = weight_kind(name)
            layer = layer_of(name)
        except ValueError:
            continue
        if kind in kinds and (layer_set is None or layer in layer_set):
            out.append(name)
    return out


def iter_matrices(model: nn.Module, names: Iterable[str]) -> Iterator[tuple[str, Tensor]]:
    params = dict(model.named_parameters())
    for n in names:
        yield n, as_matrix(n, params[n].detach())


def head_rows(name: str, head: int, shape: torch.Size | tuple[int, ...]) -> tuple[str, slice]:
    """Which side (``rows`` or ``cols``) and slice of the matrix view belong to query head `head`.

    For GQA key/value tensors pass the key/value head index (``head // (n_heads // n_kv_heads)``).
    """
    kind = weight_kind(name)
    if kind in ("W_Q", "W_K", "W_V"):
        d_head = shape[2]
        return "rows", slice(head * d_head, (head + 1) * d_head)
    if kind == "W_O":
        d_head = shape[1]
        return "cols", slice(head * d_head, (head + 1) * d_head)
    raise InputError(f"{name!r} is not an attention weight")
