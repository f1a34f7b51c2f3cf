"""The fine-tuning method registry: ``get_method(name, **hparams)``.

A benchmark is one loop over ``METHODS``. Part A's methods are registered here; part B's live in
``pact.py``, ``cwac.py`` and ``posthoc.py`` and are imported below (skipped while they do not exist).
"""

from __future__ import annotations

from typing import Any

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
try:  # pact
    from safecircuits.finetune.methods.pact import PACT

    METHODS["pact"] = PACT
except ImportError:
    pass
try:  # cwac, cwac-weights-only, cwac-acts-only
    from safecircuits.finetune.methods.cwac import CWAC, CWACActsOnly, CWACWeightsOnly

    METHODS["cwac"] = CWAC
    METHODS["cwac-weights-only"] = CWACWeightsOnly
    METHODS["cwac-acts-only"] = CWACActsOnly
except ImportError:
    pass
try:  # safelora, csulora
    from safecircuits.finetune.methods.posthoc import CSULoRA, SafeLoRA

    METHODS["safelora"] = SafeLoRA
    METHODS["csulora"] = CSULoRA
except ImportError:
    pass
# --- end of part B's methods ----------------------------------------------------------------------


def get_method(name: str, **hparams: Any) -> Method:
    """A fresh method by registry name, with its hyperparameters."""
    if name not in METHODS:
        raise ValueError(f"unknown fine-tuning method {name!r}: use one of {', '.join(sorted(METHODS))}")
    return METHODS[name](**hparams)


__all__ = ["METHODS", "get_method"]
