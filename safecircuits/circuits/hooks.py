"""Applying component masks and ablations through TransformerLens hooks.

Heads are masked at ``blocks.L.attn.hook_z`` ([batch, pos, head, d_head], one slot per *query*
head, before W_O, so grouped-query attention is handled), neurons at ``blocks.L.mlp.hook_post``
([batch, pos, d_mlp]). A mask value m in [0, 1] mixes the activation with its ablated value:
``x' = a + m * (x - a)``.

The hook names and the post-instruction position classes come from :mod:`safecircuits.hooks`,
shared with features and subspaces. Hooks are added by one context manager, :func:`masked`, through TransformerLens's own
``model.hooks(...)`` context, which removes exactly the hooks it added, also when the body raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

import torch
from jaxtyping import Float
from torch import Tensor

from safecircuits.data.chat import ChatFormat, iter_batches
from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError
from safecircuits.hooks import common_suffix_len, head_hook, neuron_hook, position_classes
from safecircuits.types import HookedModel


class AblationType(StrEnum):
    """How a removed component's activation is replaced."""

    ZERO = "zero"
    """By zero (SafeSeek's choice)."""
    MEAN = "mean"
    """By its mean over a reference PromptSet, per position class (see :func:`position_classes`)."""
    RESAMPLE = "resample"
    """By its value on another, randomly drawn reference prompt (per-prompt position-class means)."""

    @classmethod
    def parse(cls, value: str | AblationType) -> AblationType:
        try:
            return cls(value)
        except ValueError:
            raise InputError(f"unknown ablation {value!r}: use one of {', '.join(m.value for m in cls)}") from None


@dataclass
class Ablator:
    """Replacement values for ablated components.

    For ``mean`` and ``resample`` it holds per-class reference activations for every hooked layer:
    heads ``[n_ref, n_classes, n_heads, d_head]``, neurons ``[n_ref, n_classes, d_mlp]`` (mean uses
    their average over references). ``classes`` must be set to the current batch's position
    classes before a teacher-forced forward; when it is unset (generation), a multi-token forward
    is read as a left-padded prompt and single-token forwards as response tokens.
    """

    ablation: AblationType
    suffix_len: int = 1
    heads_ref: dict[int, Tensor] = field(default_factory=dict)
    neurons_ref: dict[int, Tensor] = field(default_factory=dict)
    classes: Tensor | None = None
    generator: torch.Generator | None = None
    _resample_idx: Tensor | None = None

    @property
    def n_classes(self) -> int:
        return self.suffix_len + 2

    def infer_classes(self, batch: int, pos: int, device: torch.device) -> Tensor:
        if self.classes is not None and self.classes.shape == (batch, pos):
            return self.classes.to(device)
        if pos == 1:
            return torch.full((batch, 1), self.n_classes - 1, dtype=torch.long, device=device)
        cls = torch.zeros((batch, pos), dtype=torch.long, device=device)
        k = min(self.suffix_len, pos)
        cls[:, pos - k :] = torch.arange(1, k + 1, device=device)
        return cls

    def set_batch(self, classes: Tensor | None) -> None:
        """Set position classes for the next forward, and draw resample partners."""
        self.classes = classes
        self._resample_idx = None
        if classes is not None and self.ablation == AblationType.RESAMPLE:
            n_ref = next(iter(self.heads_ref.values() or self.neurons_ref.values())).shape[0]
            self._resample_idx = torch.randint(0, n_ref, (classes.shape[0],), generator=self.generator)

    def replacement(self, ref: Tensor, batch: int, pos: int, device: torch.device) -> Tensor:
        """[batch, pos, ...] replacement values from per-class reference values."""
        cls = self.infer_classes(batch, pos, device)
        if self.ablation == AblationType.MEAN:
            table = ref  # [n_classes, ...] (already averaged)
            return table[cls]
        idx = self._resample_idx
        if idx is None or idx.shape[0] != batch:
            idx = torch.randint(0, ref.shape[0], (batch,), generator=self.generator)
            self._resample_idx = idx
        return ref[idx.to(device)[:, None], cls]

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        model: HookedModel,
        chat: ChatFormat,
        ablation: AblationType | str,
        reference: PromptSet | None = None,
        layers_heads: list[int] | None = None,
        layers_neurons: list[int] | None = None,
        batch_size: int = 32,
        max_ref: int = 256,
        seed: int = 0,
    ) -> Ablator:
        ablation = AblationType.parse(ablation)
        gen = torch.Generator().manual_seed(seed)
        out = cls(ablation=ablation, suffix_len=common_suffix_len(chat), generator=gen)
        if ablation == AblationType.ZERO:
            return out
        if reference is None or len(reference) == 0:
            raise InputError(f"{ablation.value} ablation needs a non-empty reference PromptSet")
        ref = reference.sample(max_ref, seed)
        L = model.cfg.n_layers
        layers_heads = list(range(L)) if layers_heads is None else layers_heads
        layers_neurons = list(range(L)) if layers_neurons is None else layers_neurons
        names = {head_hook(layer) for layer in layers_heads} | {neuron_hook(layer) for layer in layers_neurons}
        nc = out.n_classes
        sums: dict[str, list[Tensor]] = {n: [] for n in names}
        has_resp = all(r is not None for r in ref.responses)
        for b in iter_batches(chat, ref, batch_size, max_len=model.cfg.n_ctx, with_responses=has_resp):
            classes = position_classes(b, out.suffix_len)
            onehot = torch.nn.functional.one_hot(classes, nc).double()  # [B, T, C]
            onehot = onehot * b.attention_mask[..., None].double()
            counts = onehot.sum(1).clamp(min=1)  # [B, C]
            _, cache = model.run_with_cache(b.tokens.to(model.cfg.device), names_filter=lambda n: n in names)
            for n in names:
                act = cache[n].double().cpu()  # [B, T, ...]
                flat = act.flatten(2)
                per = torch.einsum("btc,btf->bcf", onehot, flat) / counts[..., None]
                sums[n].append(per.view(per.shape[0], nc, *act.shape[2:]))
        for n, parts in sums.items():
            per_ref = torch.cat(parts).float()  # [n_ref, C, ...]
            if not has_resp:  # no response tokens: use the prompt-body mean for responses
                per_ref[:, nc - 1] = per_ref[:, 0]
            value = per_ref.mean(0) if ablation == AblationType.MEAN else per_ref
            layer = int(n.split(".")[1])
            (out.heads_ref if n.endswith("hook_z") else out.neurons_ref)[layer] = value.to(model.cfg.device)
        return out


def _mask_hook(mask: Tensor, ablator: Ablator | None, ref: Tensor | None):
    """A hook that mixes activations with their ablated values; `mask` broadcasts over the last
    dims ([n_heads] -> [.., head, d_head] for hook_z; [d_mlp] for hook_post). A [batch, n] mask
    gives each batch row its own mask (activation patching with several components per forward)."""

    def hook(act: Tensor, hook) -> Tensor:  # noqa: ARG001
        m = mask.to(act.dtype)
        if m.ndim == 2:  # [batch, n] -> [batch, 1, n]
            m = m[:, None]
        if act.ndim == 4:
            m = m[..., None]
        if ablator is None or ref is None or ablator.ablation == AblationType.ZERO:
            return act * m
        a = ablator.replacement(ref, act.shape[0], act.shape[1], act.device).to(act.dtype)
        return a + m * (act - a)

    return hook


def mask_hooks(
    heads: Float[Tensor, "n_layers *rows n_heads"] | None,
    neurons: Float[Tensor, "n_layers *rows d_mlp"] | None,
    ablator: Ablator | None = None,
    head_layers: list[int] | None = None,
    neuron_layers: list[int] | None = None,
) -> list[tuple[str, object]]:
    """Forward hooks for masks given as full [n_layers, n] tensors, or [n_layers, batch, n] for a
    mask per batch row (rows outside the layer lists are ignored). A layer whose mask is all ones
    gets no hook (no overhead)."""
    hooks: list[tuple[str, object]] = []
    for family, masks, layers, hook_name, refs in (
        ("heads", heads, head_layers, head_hook, ablator.heads_ref if ablator else {}),
        ("neurons", neurons, neuron_layers, neuron_hook, ablator.neurons_ref if ablator else {}),
    ):
        if masks is None:
            continue
        for layer in layers if layers is not None else range(masks.shape[0]):
            m = masks[layer]
            if not m.requires_grad and bool((m == 1).all()):
                continue
            ref = refs.get(layer)
            if ablator is not None and ablator.ablation != AblationType.ZERO and ref is None:
                raise InputError(f"no {ablator.ablation.value}-ablation reference for {family} of layer {layer}")
            hooks.append((hook_name(layer), _mask_hook(m, ablator, ref)))
    return hooks


@contextmanager
def masked(
    model: HookedModel,
    heads: Float[Tensor, "n_layers n_heads"] | None = None,
    neurons: Float[Tensor, "n_layers d_mlp"] | None = None,
    ablator: Ablator | None = None,
) -> Iterator[HookedModel]:
    """Run `model` with component masks applied; the hooks are removed on exit, even on error."""
    hooks = mask_hooks(heads, neurons, ablator)
    with model.hooks(fwd_hooks=hooks):  # type: ignore[arg-type]
        yield model
