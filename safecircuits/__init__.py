"""safecircuits: mechanistic interpretability for LLM safety on TransformerLens HookedTransformers.

``import safecircuits as sc`` reaches the whole workflow (names are imported lazily, on first use,
so ``import safecircuits`` stays cheap)::

    lm = sc.load_model("smollm2-135m-instruct")            # or "organism:aligned", a saved directory
    report = sc.evaluate_model(lm)                          # the profile's held-out prompts
    circuit, data = sc.find_circuit(lm, "safety")           # learned masks over heads and neurons
    rd = sc.find_refusal_direction(lm)                      # difference of means, selected on val
    run = sc.fine_tune(lm, data, sc.finetune.get_method("cwac"), sc.FinetuneConfig(steps=100))

The subpackages are attributes too: ``sc.models``, ``sc.data``, ``sc.evaluation``,
``sc.circuits``, ``sc.features``, ``sc.subspaces``, ``sc.finetune``, ``sc.viz``, ``sc.runtime``,
``sc.errors``, ``sc.io``.
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

_SUBPACKAGES = ("models", "data", "evaluation", "circuits", "features", "subspaces", "finetune", "viz", "runtime", "errors", "io")
_EXPORTS = {name: f"safecircuits.{name}" for name in _SUBPACKAGES} | {
    # models and data
    "load_model": "safecircuits.models",
    "LoadedModel": "safecircuits.models",
    "ModelProfile": "safecircuits.models.profile",
    "PromptSet": "safecircuits.data.promptset",
    "PromptRecord": "safecircuits.data.promptset",
    "Label": "safecircuits.data.promptset",
    "load_prompts": "safecircuits.data.loaders",
    # evaluation
    "generate": "safecircuits.evaluation.generate",
    "get_judge": "safecircuits.evaluation.judges",
    "register_judge": "safecircuits.evaluation.judges",
    "evaluate_model": "safecircuits.evaluation.report",
    "EvalReport": "safecircuits.evaluation.metrics",
    # circuits
    "discover_circuit": "safecircuits.circuits.discover",
    "DiscoveryConfig": "safecircuits.circuits.discover",
    "Circuit": "safecircuits.circuits.circuit",
    "AblationType": "safecircuits.circuits.hooks",
    "Ablator": "safecircuits.circuits.hooks",
    "find_circuit": "safecircuits.circuits.recipes",
    "effect_table": "safecircuits.circuits.recipes",
    "render_effect_table": "safecircuits.circuits.recipes",
    "circuit_effect": "safecircuits.circuits.evaluate",
    "random_control": "safecircuits.circuits.evaluate",
    "faithfulness_curve": "safecircuits.circuits.evaluate",
    "seed_stability": "safecircuits.circuits.evaluate",
    "register_objective": "safecircuits.circuits.objectives",
    "register_circuit_method": "safecircuits.circuits.methods:register_method",
    # features
    "train_sae": "safecircuits.features.sae",
    "load_sae": "safecircuits.features.sae",
    "SAETrainConfig": "safecircuits.features.sae",
    "rank_features": "safecircuits.features.ranking",
    "FeatureSet": "safecircuits.features.ranking",
    "feature_ablation_effect": "safecircuits.features.intervene",
    # subspaces
    "find_refusal_direction": "safecircuits.subspaces.refusal",
    "RefusalConfig": "safecircuits.subspaces.refusal",
    "RefusalDirection": "safecircuits.subspaces.refusal",
    "WeightDeltaSubspace": "safecircuits.subspaces.weights",
    "ActivationSubspace": "safecircuits.subspaces.activation",
    "compute_activation_subspace": "safecircuits.subspaces.activation",
    "geometry_report": "safecircuits.subspaces.geometry",
    # fine-tuning
    "FinetuneConfig": "safecircuits.finetune.loop",
    "FinetuneRun": "safecircuits.finetune.loop",
    "fine_tune": "safecircuits.finetune.loop:finetune",  # sc.finetune is the subpackage
    "register_finetune_method": "safecircuits.finetune.methods:register_method",
    "safety_align": "safecircuits.finetune.align",
    "AlignConfig": "safecircuits.finetune.align",
    "evaluate_alignment": "safecircuits.finetune.align",
    "implant_backdoor": "safecircuits.finetune.backdoor",
    "BackdoorConfig": "safecircuits.finetune.backdoor",
    "prepare_artifacts": "safecircuits.finetune.benchmark",
    "run_benchmark": "safecircuits.finetune.benchmark",
    "BenchmarkConfig": "safecircuits.finetune.benchmark",
    # figures and errors
    "circuit_report_html": "safecircuits.viz",
    "SafecircuitsError": "safecircuits.errors",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
__all__ = __all__ + ["__version__"]
