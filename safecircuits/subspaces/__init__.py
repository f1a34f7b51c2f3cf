"""Safety subspaces: the refusal direction (Arditi et al.), activation-difference subspaces,
the weight-delta subspace (SafeLoRA), and their geometry. See docs/subspaces.md."""

from safecircuits._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ActivationSubspace": "safecircuits.subspaces.activation",
    "GeometryReport": "safecircuits.subspaces.geometry",
    "RefusalDirection": "safecircuits.subspaces.refusal",
    "RefusalConfig": "safecircuits.subspaces.refusal",
    "ShapeMismatchError": "safecircuits.errors",
    "WeightDeltaSubspace": "safecircuits.subspaces.weights",
    "activation_addition": "safecircuits.subspaces.refusal",
    "apply_delta_projection": "safecircuits.subspaces.weights",
    "chance_overlap": "safecircuits.subspaces.geometry",
    "collect_activations": "safecircuits.subspaces.activation",
    "collect_activations_at": "safecircuits.subspaces.activation",
    "compute_activation_subspace": "safecircuits.subspaces.activation",
    "compute_activation_subspaces": "safecircuits.subspaces.activation",
    "compute_candidate_directions": "safecircuits.subspaces.refusal",
    "directional_ablation": "safecircuits.subspaces.refusal",
    "find_refusal_direction": "safecircuits.subspaces.refusal",
    "geometry_report": "safecircuits.subspaces.geometry",
    "orthogonalize_weights": "safecircuits.subspaces.refusal",
    "overlap": "safecircuits.subspaces.geometry",
    "principal_angles": "safecircuits.subspaces.geometry",
    "resid_hook_name": "safecircuits.subspaces.refusal",
    "safelora_cosines": "safecircuits.subspaces.weights",
    "safelora_project": "safecircuits.subspaces.weights",
    "score_candidates": "safecircuits.subspaces.refusal",
})
