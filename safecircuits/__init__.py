"""safecircuits: mechanistic interpretability for LLM safety on TransformerLens HookedTransformers.

The public API is re-exported here (imported lazily, so ``import safecircuits`` stays cheap)::

    from safecircuits import load_model, PromptSet, discover_circuit, DiscoveryConfig, Circuit
"""

from __future__ import annotations

import os as _os

# OpenMP's threads busy-wait after each parallel region (GNU OpenMP: 300,000 spins, about a
# tenth of a second). On a shared machine those spins steal cores from other processes and from
# this one's own stragglers. This must be set before torch loads its OpenMP runtime, so it is set
# here, at import; a value the user already set wins. Measured in benchmarks/real_model_speed.py.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "30000")

from safecircuits._lazy import lazy_exports  # noqa: E402

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "safecircuits.models",
    "LoadedModel": "safecircuits.models",
    "PromptSet": "safecircuits.data.promptset",
    "PromptRecord": "safecircuits.data.promptset",
    "Label": "safecircuits.data.promptset",
    "load_prompts": "safecircuits.data.loaders",
    "generate": "safecircuits.evaluation.generate",
    "get_judge": "safecircuits.evaluation.judges",
    "evaluate_model": "safecircuits.evaluation.report",
    "EvalReport": "safecircuits.evaluation.metrics",
    "discover_circuit": "safecircuits.circuits.discover",
    "DiscoveryConfig": "safecircuits.circuits.discover",
    "Circuit": "safecircuits.circuits.circuit",
    "AblationType": "safecircuits.circuits.hooks",
    "Ablator": "safecircuits.circuits.hooks",
    "find_circuit": "safecircuits.circuits.recipes",
    "circuit_report_html": "safecircuits.viz",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
__all__ = __all__ + ["__version__"]
