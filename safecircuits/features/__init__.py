"""SAE safety features: SAEs trained with SAELens on hooked-model activations, safety-feature
ranking (diff / attribution / trigger scores), and causal interventions (ablation, clamping).

For CWAC (fine-tuning): :func:`load_sae`, :meth:`FeatureSet.load` and :func:`feature_acts`
(activations of chosen features, differentiable w.r.t. the model's parameters).
"""

from safecircuits.features.intervene import (
    FeatureEffect,
    clamp_effect,
    feature_ablation_effect,
    feature_acts,
    frequency_matched,
    single_feature_refusal_effects,
    splice_sae,
)
from safecircuits.features.ranking import FeatureSet, post_instruction_len, rank_features
from safecircuits.features.sae import (
    ARCHS,
    SAETrainConfig,
    TrainedSAE,
    collect_activations,
    default_sae_prompts,
    evaluate_sae,
    load_sae,
    train_sae,
    valid_hooks,
)

__all__ = [
    "ARCHS", "FeatureEffect", "FeatureSet", "SAETrainConfig", "TrainedSAE", "clamp_effect", "collect_activations",
    "default_sae_prompts", "evaluate_sae", "feature_ablation_effect", "feature_acts", "frequency_matched", "load_sae",
    "post_instruction_len", "rank_features", "single_feature_refusal_effects", "splice_sae", "train_sae", "valid_hooks",
]
