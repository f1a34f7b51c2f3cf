"""Safety-preserving fine-tuning: one loop (``finetune``), pluggable methods (``get_method``), LoRA
on TransformerLens weights, and Safety Circuit Tuning. See docs/finetune.md.

The names below are imported lazily, so importing the package stays cheap::

    from safecircuits.finetune import FinetuneConfig, finetune, get_method
"""

from __future__ import annotations

from safecircuits._lazy import lazy_exports

_EXPORTS = {
    "ARTIFACT_HELP": "safecircuits.finetune.base",
    "FinetuneContext": "safecircuits.finetune.base",
    "Method": "safecircuits.finetune.base",
    "FinetuneConfig": "safecircuits.finetune.loop",
    "FinetuneRun": "safecircuits.finetune.loop",
    "finetune": "safecircuits.finetune.loop",
    "add_lora": "safecircuits.finetune.lora",
    "apply_deltas": "safecircuits.finetune.lora",
    "lora_deltas": "safecircuits.finetune.lora",
    "merge_lora": "safecircuits.finetune.lora",
    "remove_lora": "safecircuits.finetune.lora",
    "METHODS": "safecircuits.finetune.methods",
    "get_method": "safecircuits.finetune.methods",
    "register_method": "safecircuits.finetune.methods",
    "TASKS": "safecircuits.finetune.tasks",
    "get_task": "safecircuits.finetune.tasks",
    "register_task": "safecircuits.finetune.tasks",
    "AlignConfig": "safecircuits.finetune.align",
    "BackdoorConfig": "safecircuits.finetune.backdoor",
    "implant_backdoor": "safecircuits.finetune.backdoor",
    "safety_align": "safecircuits.finetune.align",
    "evaluate_alignment": "safecircuits.finetune.align",
    "refusal_data": "safecircuits.finetune.align",
    "prepare_artifacts": "safecircuits.finetune.benchmark",
    "run_benchmark": "safecircuits.finetune.benchmark",
    "BenchmarkConfig": "safecircuits.finetune.benchmark",
    "tune": "safecircuits.finetune.tuning",
    "merge_results": "safecircuits.finetune.benchmark",
    "markdown_table": "safecircuits.finetune.benchmark",
    "circuit_param_masks": "safecircuits.finetune.methods.sct",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
