"""Safety Circuit Tuning (SCT; SafeSeek, arXiv 2603.23268; docs/methods.md, section 7).

The paper gives no recipe; both variants are ours (docs/finetune.md):

* ``sct-tune``   — only the circuit's parameters train (efficient safety fine-tuning: the data
                   passed in is refusal data);
* ``sct-freeze`` — task fine-tuning with the circuit's parameters frozen (every other parameter trains).

"Circuit parameters" (:func:`circuit_param_masks`): for head (l, h) its slices of W_Q, W_K, W_V,
b_Q, b_K, b_V and W_O (TransformerLens indexes the head on dim 0 of each); for neuron (l, n) the
column n of W_in / W_gate, b_in[n], and the row n of W_out. The shared biases b_O / b_out, the
layer norms and the embeddings belong to no component and are never circuit parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from safecircuits.circuits.circuit import Circuit
from safecircuits.errors import InputError, InputTypeError
from safecircuits.finetune.base import FinetuneContext, Method


def circuit_param_masks(model: HookedTransformer, circuit: Circuit) -> dict[str, Tensor]:
    """``{param name: 0/1 float mask}`` of the entries that belong to the circuit's heads and neurons.

    Only parameters with at least one circuit entry are returned. Grouped-query attention stores
    keys and values per key/value head (``_W_K``/``_W_V``/``_b_K``/``_b_V``), shared by
    ``n_heads // n_kv_heads`` query heads: a key/value head is included when *any* of its query
    heads is in the circuit (it cannot be split, and leaving it out would freeze part of the head's
    computation). So with GQA a circuit may own a little more than its own heads' share.
    """
    circuit.check_model(model)
    named = dict(model.named_parameters())
    cfg = model.cfg
    n_kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    group = cfg.n_heads // n_kv
    masks: dict[str, Tensor] = {}

    def mark(name: str, index: Any) -> None:
        if name not in named:
            return
        if name not in masks:
            masks[name] = torch.zeros_like(named[name], dtype=torch.float32)
        masks[name][index] = 1.0

    for l, h in circuit.heads.nonzero().tolist():
        pre = f"blocks.{l}.attn."
        for w in ("W_Q", "b_Q", "W_O", "W_K", "W_V", "b_K", "b_V"):
            mark(pre + w, h)
        for w in ("_W_K", "_W_V", "_b_K", "_b_V"):
            mark(pre + w, h // group)
    for l, i in circuit.neurons.nonzero().tolist():
        pre = f"blocks.{l}.mlp."
        mark(pre + "W_in", (slice(None), i))
        mark(pre + "W_gate", (slice(None), i))
        mark(pre + "b_in", i)
        mark(pre + "W_out", i)
    return masks


def circuit_param_count(model: HookedTransformer, circuit: Circuit) -> int:
    return int(sum(m.sum() for m in circuit_param_masks(model, circuit).values()))


def _circuit(ctx: FinetuneContext, hparams: dict[str, Any]) -> Circuit:
    c = ctx.artifacts["circuit"]
    if isinstance(c, str | Path):
        c = Circuit.load(c)
    if not isinstance(c, Circuit):
        raise InputTypeError(f"artifact 'circuit' must be a Circuit or a path to a circuit JSON, got {type(c).__name__}")
    top_k = hparams.get("top_k")
    if top_k is not None:
        c = c.top_k(*top_k)
    return c


class _SCT(Method):
    needs = ("circuit",)
    mode = "full"
    source = "SafeSeek arXiv 2603.23268 (SCT); the variants' details are ours, docs/finetune.md"

    def __init__(self, top_k: tuple[int, int] | None = None, **hparams: Any):
        """``top_k=(n_heads, n_neurons)`` keeps only the circuit's highest-scoring components."""
        super().__init__(**({"top_k": list(top_k)} if top_k is not None else {}), **hparams)

    def setup(self, ctx: FinetuneContext) -> None:
        if ctx.state.get("mode", self.mode) != "full":
            raise InputError(f"{self.name} selects entries of the full weights: run it in 'full' mode, not LoRA")
        model = ctx.lm.model
        if not isinstance(model, HookedTransformer):
            # a TransformerBridge names its parameters the Hugging Face way: no W_Q / W_in to select
            raise InputError(f"{self.name} selects HookedTransformer parameters: load the model with the default backend, "
                             f"not {type(model).__name__}")
        circuit = _circuit(ctx, self.hparams)
        ctx.state["circuit"] = circuit
        ctx.state["circuit_masks"] = circuit_param_masks(model, circuit)
        if not ctx.state["circuit_masks"]:
            raise InputError(f"{self.name}: the circuit is empty (no heads or neurons), so there are no circuit parameters")


class SCTTune(_SCT):
    """Only circuit parameters train (safety fine-tuning on refusal data)."""

    name = "sct-tune"

    def trainable(self, ctx: FinetuneContext) -> dict[str, Tensor | None]:
        return dict(ctx.state["circuit_masks"])


class SCTFreeze(_SCT):
    """Every parameter trains except the circuit's entries (task fine-tuning that spares the circuit)."""

    name = "sct-freeze"

    def trainable(self, ctx: FinetuneContext) -> dict[str, Tensor | None]:
        masks = ctx.state["circuit_masks"]
        return {n: (1.0 - masks[n]) if n in masks else None for n, _ in ctx.lm.model.named_parameters()}


__all__ = ["SCTFreeze", "SCTTune", "circuit_param_count", "circuit_param_masks"]
