"""The fine-tuning method registry: ``get_method(name, **hparams)``, ``register_method(name, cls)``.

A benchmark is one loop over ``METHODS``.
"""

from __future__ import annotations

from typing import Any

from safecircuits.errors import InputError
from safecircuits.finetune.base import Method
from safecircuits.finetune.methods.basic import SFT, LoRA
from safecircuits.finetune.methods.cwac import CWAC, CWACActsOnly, CWACWeightsOnly
from safecircuits.finetune.methods.pact import PACT
from safecircuits.finetune.methods.posthoc import CSULoRA, SafeLoRA
from safecircuits.finetune.methods.sct import SCTFreeze, SCTTune

METHODS: dict[str, type[Method]] = {
    "sft": SFT,
    "lora": LoRA,
    "sct-freeze": SCTFreeze,
    "sct-tune": SCTTune,
    "cwac": CWAC,
    "cwac-weights-only": CWACWeightsOnly,
    "cwac-acts-only": CWACActsOnly,
    "safelora": SafeLoRA,
    "csulora": CSULoRA,
    "pact": PACT,
}


def register_method(name: str, cls: type, replace: bool = False) -> None:
    """Add a fine-tuning method (a :class:`~safecircuits.finetune.base.Method` subclass) under `name`."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise InputError(f"a fine-tuning method must be a Method subclass, got {cls!r}")
    if name in METHODS and not replace:
        raise InputError(f"a fine-tuning method named {name!r} is registered already; pass replace=True to override it")
    METHODS[name] = cls


def get_method(name: str, **hparams: Any) -> Method:
    """A fresh method by registry name, with its hyperparameters."""
    if name not in METHODS:
        raise InputError(f"unknown fine-tuning method {name!r}: use one of {', '.join(sorted(METHODS))}")
    return METHODS[name](**hparams)


__all__ = ["METHODS", "get_method", "register_method"]
