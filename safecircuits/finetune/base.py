"""The contract between the fine-tuning loop and the methods plugged into it.

Every method (``sft``, ``lora``, ``sct-*``, ``cwac*``, ``safelora``, ``csulora``, ``pact``) is a
:class:`Method`: a small object whose hooks the one loop in ``finetune/loop.py`` calls. A method
overrides only the hooks it needs:

* ``setup(ctx)``            — once, before training: precompute references (aligned activations,
                               safety tokens, projectors) from ``ctx``.
* ``trainable(ctx)``        — which parameters train, with optional 0/1 entry masks (gradient
                               masks). ``None`` = every parameter (full fine-tuning) or, in LoRA
                               mode, every LoRA factor.
* ``extra_loss(ctx, step, batch, logits)`` — named scalar loss terms added to the task CE. On
                               real models ``logits`` is None unless the method sets ``needs_logits``
                               (the loop unembeds response positions only).
* ``transform_update(ctx, name, delta)`` — after each optimiser step, the update of parameter
                               ``name`` (``p_after - p_before``, in TransformerLens layout) may be
                               replaced (e.g. projected off a safety subspace).
* ``post_hoc(ctx, deltas)`` — after training, in LoRA mode: the merged low-rank deltas
                               ``{param name: delta in TL layout}`` may be transformed (SafeLoRA,
                               CSULoRA). Must not mutate its input.

Artifacts a method needs (``circuit``, ``subspace``, ``features``, ``base``) are declared in
``needs``; the loop checks they were given and says how to make a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from torch import Tensor

from safecircuits.data.chat import TokenBatch
from safecircuits.models.loaded import LoadedModel

ARTIFACT_HELP = {
    "circuit": "a safety circuit JSON: `safecircuits discover --model NAME --objective safety --out circuit.json`",
    "subspace": "a weight-delta subspace: `safecircuits subspace weights --base BASE --aligned NAME --out delta.pt`",
    "features": "an SAE feature set: `safecircuits sae train ...` then `safecircuits sae features ... --out features.json`",
    "base": "the pre-alignment base model name (e.g. organism:base)",
}


@dataclass
class FinetuneContext:
    """What a method sees. ``lm`` is the model being trained (its weights change); ``reference``
    is a frozen copy of the model before fine-tuning (the aligned model)."""

    lm: LoadedModel
    reference: LoadedModel
    config: Any  # FinetuneConfig
    artifacts: dict[str, Any] = field(default_factory=dict)
    safety_prompts: Any = None  # PromptSet of harmful prompts (with refusal targets) for regularisers
    state: dict[str, Any] = field(default_factory=dict)  # per-method scratch space


class Method:
    """Base class: plain fine-tuning (every hook a no-op)."""

    name: ClassVar[str] = "sft"
    mode: ClassVar[Literal["full", "lora"]] = "full"
    needs: ClassVar[tuple[str, ...]] = ()
    source: ClassVar[str] = ""
    needs_logits: ClassVar[bool] = False  # extra_loss reads the training logits (else it gets None on real models)

    def __init__(self, **hparams: Any):
        self.hparams = hparams

    def required_artifacts(self) -> tuple[str, ...]:
        """The artifacts this instance needs from the caller: ``needs``, less what its
        hyperparameters bring themselves (e.g. CWAC's ``features`` file)."""
        return tuple(self.needs)

    def setup(self, ctx: FinetuneContext) -> None:
        return None

    def trainable(self, ctx: FinetuneContext) -> dict[str, Tensor | None] | None:
        return None

    def extra_loss(self, ctx: FinetuneContext, step: int, batch: TokenBatch, logits: Tensor | None) -> dict[str, Tensor]:
        return {}

    def extra_loss_needs_train_graph(self) -> bool:
        """Whether :meth:`extra_loss` differentiates through the training forward (its `logits` or
        activations captured in it). If not, the loop backpropagates the task loss first and frees
        that graph before the extra loss builds its own: the same gradients, half the peak memory."""
        return True

    def transform_update(self, ctx: FinetuneContext, name: str, delta: Tensor) -> Tensor:
        return delta

    def has_update_transform(self) -> bool:
        return type(self).transform_update is not Method.transform_update

    def post_hoc(self, ctx: FinetuneContext, deltas: dict[str, Tensor]) -> dict[str, Tensor]:
        return deltas

    def config(self) -> dict[str, Any]:
        return {"method": self.name, "mode": self.mode, **self.hparams}
