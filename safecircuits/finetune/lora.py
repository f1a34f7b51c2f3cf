"""LoRA on TransformerLens einsum weights, through ``torch.nn.utils.parametrize``.

Why hand-written: TransformerLens stores W_Q/W_K/W_V/W_O/W_in/W_gate/W_out as plain einsum
``nn.Parameter`` tensors (``W_Q [n_heads, d_model, d_head]`` ...), not ``nn.Linear`` modules, so
peft's LoRA (which wraps ``nn.Linear``) cannot target them. A parametrization replaces the
parameter by a function of it: ``W -> W + from_matrix(B @ A * alpha / r)``, where ``A [r, d_in]``
and ``B [d_out, r]`` act on the ``[d_out, d_in]`` matrix view of :mod:`safecircuits.models.weights`
(the same view SafeLoRA/CSULoRA subspaces use). Every forward pass of TransformerLens reads
``self.W_Q`` and so sees the adapted weight; no model code is forked.

``A`` starts small and random (Kaiming-uniform, as peft), ``B`` at zero, so the adapted model
starts equal to the base model. GQA's ``_W_K``/``_W_V`` are adapted as stored (per key/value head).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from safecircuits.errors import InputError, MissingKeyError
from safecircuits.models.weights import WEIGHT_KINDS, as_matrix, from_matrix, weight_names


class LoRAParametrization(nn.Module):
    """``W -> W + from_matrix(name, B @ A * alpha / r, W.shape)`` for one TL weight tensor."""

    def __init__(self, name: str, shape: torch.Size, rank: int, alpha: float, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        super().__init__()
        self.param_name = name
        self.shape = tuple(shape)
        d_out, d_in = as_matrix(name, torch.empty(shape, device="meta")).shape
        self.rank = rank
        self.alpha = alpha
        self.scale = alpha / rank
        a = torch.empty(rank, d_in, dtype=dtype)
        # Kaiming-uniform with a = sqrt(5) (peft's and nn.Linear's default), from a seeded generator.
        bound = 1.0 / math.sqrt(d_in)
        a.uniform_(-bound, bound, generator=generator)
        self.A = nn.Parameter(a.to(device))
        self.B = nn.Parameter(torch.zeros(d_out, rank, dtype=dtype, device=device))

    def delta(self) -> Tensor:
        """The low-rank update in TransformerLens layout."""
        return from_matrix(self.param_name, (self.B @ self.A) * self.scale, self.shape)

    def forward(self, w: Tensor) -> Tensor:
        # The factors are float32 whatever the model's dtype; the adapted weight is computed in
        # float32 and used in the model's dtype.
        if w.dtype == self.A.dtype:
            return w + self.delta()
        return (w.float() + self.delta()).to(w.dtype)


def _split(name: str) -> tuple[str, str]:
    module, _, leaf = name.rpartition(".")
    return module, leaf


def add_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    targets: Iterable[str] = WEIGHT_KINDS,
    layers: Iterable[int] | None = None,
    seed: int = 0,
) -> list[str]:
    """Register LoRA parametrizations on the target weights; returns the TL names adapted.

    ``targets`` are weight kinds (``W_Q`` ... ``W_out``; ``W_K``/``W_V`` include GQA's
    ``_W_K``/``_W_V``); kinds the model has not got (``W_gate`` on a non-gated MLP) are skipped.
    """
    if rank < 1:
        raise InputError(f"LoRA rank must be >= 1, got {rank}")
    if has_lora(model):
        raise InputError("the model already has LoRA parametrizations: merge_lora() or remove_lora() it first")
    names = weight_names(model, kinds=tuple(targets), layers=layers)
    if not names:
        raise InputError(f"no weights of kinds {list(targets)} found in the model: nothing for LoRA to adapt")
    gen = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    for name in names:
        mod_name, leaf = _split(name)
        p = params[name]
        lora = LoRAParametrization(name, p.shape, rank, alpha, generator=gen, dtype=torch.float32 if p.dtype in (torch.bfloat16, torch.float16) else p.dtype,
                                   device=p.device)
        parametrize.register_parametrization(modules[mod_name], leaf, lora)
    return names


def _loras(model: nn.Module) -> dict[str, LoRAParametrization]:
    """TL parameter name -> its LoRA parametrization."""
    out: dict[str, LoRAParametrization] = {}
    for mod_name, mod in model.named_modules():
        if not parametrize.is_parametrized(mod):
            continue
        for leaf, plist in mod.parametrizations.items():
            for p in plist:
                if isinstance(p, LoRAParametrization):
                    out[f"{mod_name}.{leaf}" if mod_name else leaf] = p
    return out


def has_lora(model: nn.Module) -> bool:
    return bool(_loras(model))


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable LoRA factors, by their parameter names (``...parametrizations.W_Q.0.A``)."""
    return {n: p for n, p in model.named_parameters() if ".parametrizations." in n and n.rsplit(".", 1)[-1] in ("A", "B")}


@torch.no_grad()
def lora_deltas(model: nn.Module) -> dict[str, Tensor]:
    """``{TL param name: B @ A * alpha / r}`` in TransformerLens layout (detached copies)."""
    return {name: lora.delta().detach().clone() for name, lora in _loras(model).items()}


def _remove(model: nn.Module, leave_parametrized: bool) -> list[str]:
    names = list(_loras(model))
    modules = dict(model.named_modules())
    for name in names:
        mod_name, leaf = _split(name)
        parametrize.remove_parametrizations(modules[mod_name], leaf, leave_parametrized=leave_parametrized)
    return names


def merge_lora(model: nn.Module) -> list[str]:
    """Fold the LoRA updates into plain weights (``W <- W + delta``) and drop the parametrizations."""
    with torch.no_grad():
        return _remove(model, leave_parametrized=True)


def remove_lora(model: nn.Module) -> list[str]:
    """Drop the parametrizations and keep the original weights (the updates are discarded)."""
    return _remove(model, leave_parametrized=False)


@torch.no_grad()
def apply_deltas(model: nn.Module, deltas: dict[str, Tensor]) -> None:
    """Add ``deltas`` (TL layout) to the model's plain weights, in place."""
    if has_lora(model):
        raise InputError("apply_deltas needs plain weights: merge_lora() or remove_lora() the model first")
    params = dict(model.named_parameters())
    for name, d in deltas.items():
        if name not in params:
            raise MissingKeyError(f"delta for {name!r}: the model has no such parameter")
        p = params[name]
        if d.shape != p.shape:
            raise InputError(f"delta for {name!r} has shape {tuple(d.shape)}, the parameter has {tuple(p.shape)}")
        p.add_(d.to(p.dtype).to(p.device))


__all__ = ["LoRAParametrization", "add_lora", "apply_deltas", "has_lora", "lora_deltas", "lora_parameters", "merge_lora", "remove_lora"]
