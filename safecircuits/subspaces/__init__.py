"""Safety subspaces: the refusal direction (Arditi et al.), activation-difference subspaces,
the weight-delta subspace (SafeLoRA), and their geometry. See docs/subspaces.md."""

from safecircuits.subspaces.activation import (
    ActivationSubspace,
    collect_activations,
    compute_activation_subspace,
)
from safecircuits.subspaces.geometry import (
    GeometryReport,
    chance_overlap,
    geometry_report,
    overlap,
    principal_angles,
)
from safecircuits.subspaces.refusal import (
    RefusalDirection,
    activation_addition,
    compute_candidate_directions,
    directional_ablation,
    find_refusal_direction,
    orthogonalize_weights,
    resid_hook_name,
    score_candidates,
)
from safecircuits.subspaces.weights import (
    SubspaceShapeError,
    WeightDeltaSubspace,
    apply_delta_projection,
    safelora_cosines,
    safelora_project,
)

__all__ = [
    "ActivationSubspace",
    "GeometryReport",
    "RefusalDirection",
    "SubspaceShapeError",
    "WeightDeltaSubspace",
    "activation_addition",
    "apply_delta_projection",
    "chance_overlap",
    "collect_activations",
    "compute_activation_subspace",
    "compute_candidate_directions",
    "directional_ablation",
    "find_refusal_direction",
    "geometry_report",
    "orthogonalize_weights",
    "overlap",
    "principal_angles",
    "resid_hook_name",
    "safelora_cosines",
    "safelora_project",
    "score_candidates",
]
