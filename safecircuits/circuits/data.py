"""Objective data: the PromptSets each discovery objective needs, built for organisms."""

from __future__ import annotations

from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError
from safecircuits.models.loaded import LoadedModel


def organism_objective_data(lm: LoadedModel, objective: str, split: str = "train") -> dict[str, PromptSet]:
    """PromptSets for `objective` ("safety" or "backdoor") from an organism's language split."""
    from safecircuits.models.language import Language

    if "organism" not in lm.info:
        raise InputError(f"{lm.name} is not an organism; build the objective's PromptSets yourself (see docs/circuits.md)")
    org = lm.info["organism"]
    lang = Language(org["split_seed"])
    harmless = lang.prompt_set(split, "harmless")
    if objective == "safety":
        return {
            "comply": lang.prompt_set(split, "harmful", response="comply"),
            "refuse": lang.prompt_set(split, "harmful", response="refuse"),
            "harmless": harmless,
        }
    if objective == "backdoor":
        trig = org["trigger"]
        return {
            "clean": lang.prompt_set(split, "harmful", response="refuse"),
            "triggered_clean": lang.prompt_set(split, "triggered", trigger=trig, response="refuse"),
            "triggered_backdoor": lang.prompt_set(split, "triggered", trigger=trig, response="comply"),
            "clean_backdoor": lang.prompt_set(split, "harmful", response="comply"),
            "harmless": harmless,
        }
    raise InputError(f"no organism data for objective {objective!r}: use safety or backdoor")
