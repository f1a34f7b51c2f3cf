"""Hook primitives shared by circuits, features and subspaces.

Code talks to a model only through TransformerLens hook names and ``model.cfg``: the names below,
the post-instruction positions of a chat format, and one way to capture activations that runs the
model only as deep as the hooks asked for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from safecircuits.data.chat import ChatFormat, TokenBatch
from safecircuits.errors import InputError

__all__ = ["capture", "common_suffix_len", "d_mlp", "head_hook", "hook_layer", "neuron_hook", "position_classes",
           "resid_hook_name"]


def head_hook(layer: int) -> str:
    """Each query head's output before W_O: ``[batch, pos, n_heads, d_head]``."""
    return f"blocks.{layer}.attn.hook_z"


def neuron_hook(layer: int) -> str:
    """The MLP's neurons after the activation: ``[batch, pos, d_mlp]``."""
    return f"blocks.{layer}.mlp.hook_post"


def d_mlp(model: Any) -> int:
    """The model's MLP width (``cfg.d_mlp``); an InputError for a model without MLP neurons
    (TransformerLens leaves ``d_mlp`` unset on attention-only models)."""
    width = model.cfg.d_mlp
    if width is None:
        raise InputError(f"{getattr(model.cfg, 'model_name', 'this model')}: the model has no MLP neurons (cfg.d_mlp is None)")
    return int(width)


def resid_hook_name(model: Any, layer: int) -> str:
    """Residual stream *before* layer `layer`; ``layer == n_layers`` is the final residual stream."""
    n = model.cfg.n_layers
    if not 0 <= layer <= n:
        raise InputError(f"layer {layer} is out of range: residual-stream layers are 0..{n} (n_layers = {n} is the final stream)")
    return f"blocks.{layer}.hook_resid_pre" if layer < n else f"blocks.{n - 1}.hook_resid_post"


def hook_layer(name: str) -> int | None:
    """``blocks.7.mlp.hook_post`` -> 7; None for hooks outside the blocks (``hook_embed``, ``ln_final``)."""
    m = re.match(r"blocks\.(\d+)\.", name)
    return int(m.group(1)) if m else None


# Probe prompts for the template suffix: they differ in their last word, in English and in the
# organism language alike. (Probing with words outside a word-level vocabulary would make every
# probe end in the same <unk> tokens, which look like template tokens.)
_SUFFIX_PROBES = ("alpha beta", "gamma delta epsilon", "how do i bake the bread ?", "tell me how to plant the tulip .", "sure")


def common_suffix_len(chat: ChatFormat) -> int:
    """Number of template tokens after the user's text (the post-instruction positions): the
    shortest token suffix shared by any two probe prompts whose last words differ."""
    ids = [chat.prompt_ids(p) for p in _SUFFIX_PROBES]
    best = None
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            a, b = ids[i], ids[j]
            n = 0
            while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
                n += 1
            best = n if best is None else min(best, n)
    return max(best or 0, 1)


def position_classes(batch: TokenBatch, suffix_len: int) -> Int[Tensor, "batch pos"]:
    """Position classes: 0 = prompt body (and padding), 1..suffix_len = the post-instruction
    template tokens in order, suffix_len + 1 = response tokens."""
    B, T = batch.tokens.shape
    cls = torch.zeros((B, T), dtype=torch.long)
    pos = torch.arange(T)
    for b in range(B):
        n = int(batch.attention_mask[b].sum())
        start = T - n if batch.padding_side == "left" else 0
        end_prompt = start + batch.prompt_lengths[b]
        k = min(suffix_len, batch.prompt_lengths[b])
        for j in range(k):
            cls[b, end_prompt - k + j] = 1 + j
        cls[b, (pos >= end_prompt) & (pos < start + n)] = suffix_len + 1
    return cls


def capture(model: Any, tokens: Tensor, names: Sequence[str], attention_mask: Tensor | None = None) -> dict[str, Tensor]:
    """The activations at `names` for `tokens`, from a forward that stops after the deepest hooked
    block (no unembedding). Differentiable: wrap it in ``torch.no_grad()`` when only reading."""
    names = list(dict.fromkeys(names))
    if not names:
        raise InputError("give at least one hook name")
    bad = [n for n in names if n not in model.hook_dict]
    if bad:
        raise InputError(f"{bad[0]!r} is not a hook of this model; e.g. use 'blocks.1.hook_resid_pre'")
    layers = [hook_layer(n) for n in names]
    stop = None if any(x is None for x in layers) else max(layers) + 1  # type: ignore[type-var, operator]
    store: dict[str, Tensor] = {}

    def keep(act: Tensor, hook: Any) -> None:
        store[hook.name] = act

    with model.hooks(fwd_hooks=[(n, keep) for n in names]):
        model(tokens, attention_mask=attention_mask, stop_at_layer=stop if stop is not None and stop < model.cfg.n_layers else None)
    return store
