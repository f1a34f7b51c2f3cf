"""The fine-tuning method registry: ``get_method(name, **hparams)``.

A benchmark is one loop over ``METHODS``. Part A's methods are registered here; part B's live in
``pact.py``, ``cwac.py`` and ``posthoc.py`` and are imported below (skipped while they do not exist).
"""

from __future__ import annotations

import importlib
from typing import Any

from safecircuits.errors import InputError
from safecircuits.finetune.base import Method
from safecircuits.finetune.methods.basic import SFT, LoRA
from safecircuits.finetune.methods.sct import SCTFreeze, SCTTune

METHODS: dict[str, type[Method]] = {
    "sft": SFT,
    "lora": LoRA,
    "sct-freeze": SCTFreeze,
    "sct-tune": SCTTune,
}

# --- part B's methods: pact, cwac, cwac-weights-only, cwac-acts-only, safelora, csulora ---------
# A module that does not exist yet is skipped; an import error *inside* an existing module is raised.
def _register(module: str, names: dict[str, str]) -> None:
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        if getattr(e, "name", None) == module:
            return
        raise
    for method_name, cls_name in names.items():
        METHODS[method_name] = getattr(mod, cls_name)


_register("safecircuits.finetune.methods.pact", {"pact": "PACT"})
_register("safecircuits.finetune.methods.cwac", {"cwac": "CWAC", "cwac-weights-only": "CWACWeightsOnly", "cwac-acts-only": "CWACActsOnly"})
_register("safecircuits.finetune.methods.posthoc", {"safelora": "SafeLoRA", "csulora": "CSULoRA"})
# --- end of part B's methods ----------------------------------------------------------------------


def get_method(name: str, **hparams: Any) -> Method:
    """A fresh method by registry name, with its hyperparameters."""
    if name not in METHODS:
        raise InputError(f"unknown fine-tuning method {name!r}: use one of {', '.join(sorted(METHODS))}")
    return METHODS[name](**hparams)


__all__ = ["METHODS", "get_method"]
