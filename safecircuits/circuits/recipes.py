"""Ready recipes: tuned discovery settings per objective, and the ablation table the CLI prints.

The defaults of :class:`DiscoveryConfig` and the objectives follow SafeSeek's code. On the
organisms those defaults give oversized circuits, for two measured reasons (docs/circuits.md):
the comply/refuse decision is one token of ~15, so whole-response CE hides it
(``decision_tokens=3`` fixes that), and SafeSeek's per-layer-mean penalty makes one head cost as
much as ``d_mlp / n_heads`` neurons, so a search over both families drops many neurons instead of
one head (``penalty_norm="component"`` fixes that). The recipes below are what we measured to work.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from safecircuits.circuits.circuit import Circuit
from safecircuits.circuits.data import organism_objective_data
from safecircuits.circuits.discover import DiscoveryConfig, discover_circuit
from safecircuits.circuits.objectives import get_objective
from safecircuits.data.promptset import PromptSet
from safecircuits.models.loaded import LoadedModel

RECIPES: dict[str, dict[str, Any]] = {
    "safety": {
        "objective": {"decision_tokens": 3, "lambda_sparsity": 1.0},
        "config": {"ablation": "zero", "epochs": 40, "lr": 0.05, "penalty_norm": "layer-mean", "patience": 20},
    },
    "backdoor": {
        "objective": {"decision_tokens": 3, "lambda_sparsity": 0.5, "w_harmless": 3.0},
        "config": {"ablation": "mean", "epochs": 20, "lr": 0.05, "penalty_norm": "component", "patience": 20},
    },
}


def find_circuit(
    lm: LoadedModel,
    objective: str,
    data: dict[str, PromptSet] | None = None,
    val_data: dict[str, PromptSet] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> tuple[Circuit, dict[str, PromptSet]]:
    """Discover `objective`'s circuit with the recipe's settings; keyword overrides (None = keep)
    go to DiscoveryConfig. For organisms the data default to the train split (val: val split)."""
    if objective not in RECIPES:
        raise ValueError(f"unknown objective {objective!r}: use one of {', '.join(RECIPES)}")
    recipe = RECIPES[objective]
    cfg_kw = dict(recipe["config"])
    cfg_kw.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("ablation") and overrides["ablation"] != recipe["config"]["ablation"]:
        cfg_kw["ablation"] = overrides["ablation"]
    cfg = DiscoveryConfig(progress=progress, **cfg_kw)
    if data is None:
        data = organism_objective_data(lm, objective, "train")
        val_data = val_data or organism_objective_data(lm, objective, "val")
    obj = get_objective(objective, **recipe["objective"])
    return discover_circuit(lm, obj, data, cfg, val_data=val_data), data
