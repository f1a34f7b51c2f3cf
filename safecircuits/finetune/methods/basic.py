"""Plain fine-tuning: ``sft`` (every parameter) and ``lora`` (LoRA factors on the layer weights)."""

from __future__ import annotations

from safecircuits.finetune.base import Method


class SFT(Method):
    """Full supervised fine-tuning: every parameter trains, no constraint (the attack baseline)."""

    name = "sft"
    mode = "full"
    source = "standard supervised fine-tuning"


class LoRA(Method):
    """LoRA (Hu et al. 2106.09685): rank ``config.lora_rank`` factors on ``config.lora_targets``,
    merged into plain weights at the end."""

    name = "lora"
    mode = "lora"
    source = "LoRA, arXiv 2106.09685"


__all__ = ["LoRA", "SFT"]
