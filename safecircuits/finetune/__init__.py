"""Safety-preserving fine-tuning: one loop (``finetune``), pluggable methods (``get_method``), LoRA
on TransformerLens weights, and Safety Circuit Tuning. See docs/finetune.md."""

from safecircuits.finetune.base import ARTIFACT_HELP, FinetuneContext, Method
from safecircuits.finetune.loop import FinetuneConfig, FinetuneRun, finetune, load_finetuned_dir
from safecircuits.finetune.lora import add_lora, apply_deltas, lora_deltas, merge_lora, remove_lora
from safecircuits.finetune.methods import METHODS, get_method
from safecircuits.finetune.methods.sct import circuit_param_masks

__all__ = [
    "ARTIFACT_HELP",
    "METHODS",
    "FinetuneConfig",
    "FinetuneContext",
    "FinetuneRun",
    "Method",
    "add_lora",
    "apply_deltas",
    "circuit_param_masks",
    "finetune",
    "get_method",
    "load_finetuned_dir",
    "lora_deltas",
    "merge_lora",
    "remove_lora",
]
