"""Circuit discovery: learned binary masks over heads and neurons (SafeSeek), baselines, and the
evaluation of a circuit (removed / alone, random controls, faithfulness curves, seed stability).
See docs/circuits.md."""

from __future__ import annotations

from safecircuits._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "AblationType": "safecircuits.circuits.hooks",
    "Ablator": "safecircuits.circuits.hooks",
    "BASELINES": "safecircuits.circuits.baselines",
    "CIRCUIT_METHODS": "safecircuits.circuits.methods",
    "Circuit": "safecircuits.circuits.circuit",
    "CircuitMethod": "safecircuits.circuits.methods",
    "DiscoveryConfig": "safecircuits.circuits.discover",
    "OBJECTIVES": "safecircuits.circuits.objectives",
    "Objective": "safecircuits.circuits.objectives",
    "CustomObjective": "safecircuits.circuits.objectives",
    "RECIPES": "safecircuits.circuits.recipes",
    "activation_patching": "safecircuits.circuits.baselines",
    "attribution_patching": "safecircuits.circuits.baselines",
    "circuit_effect": "safecircuits.circuits.evaluate",
    "discover_circuit": "safecircuits.circuits.discover",
    "effect_table": "safecircuits.circuits.recipes",
    "faithfulness_curve": "safecircuits.circuits.evaluate",
    "find_circuit": "safecircuits.circuits.recipes",
    "get_method": "safecircuits.circuits.methods",
    "get_objective": "safecircuits.circuits.objectives",
    "masked": "safecircuits.circuits.hooks",
    "random_circuit": "safecircuits.circuits.baselines",
    "random_control": "safecircuits.circuits.evaluate",
    "random_like": "safecircuits.circuits.baselines",
    "register_method": "safecircuits.circuits.methods",
    "register_objective": "safecircuits.circuits.objectives",
    "seed_stability": "safecircuits.circuits.evaluate",
})
