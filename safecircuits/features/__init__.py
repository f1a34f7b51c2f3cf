"""SAE safety features: SAEs trained with SAELens on hooked-model activations, safety-feature
ranking (diff / attribution / trigger scores), and causal interventions (ablation, clamping).

For CWAC (fine-tuning): :func:`load_sae`, :meth:`FeatureSet.load` and :func:`feature_acts`
(activations of chosen features, differentiable w.r.t. the model's parameters)."""

from safecircuits._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ARCHS": "safecircuits.features.sae",
    "FeatureEffect": "safecircuits.features.intervene",
    "FeatureProtocolResult": "safecircuits.features.protocol",
    "FeatureSelection": "safecircuits.features.protocol",
    "FeatureSet": "safecircuits.features.ranking",
    "SAETrainConfig": "safecircuits.features.sae",
    "TrainedSAE": "safecircuits.features.sae",
    "clamp_effect": "safecircuits.features.intervene",
    "collect_activations": "safecircuits.features.sae",
    "evaluate_sae": "safecircuits.features.sae",
    "feature_ablation_effect": "safecircuits.features.intervene",
    "default_sae_hooks": "safecircuits.features.protocol",
    "feature_acts": "safecircuits.features.intervene",
    "feature_protocol": "safecircuits.features.protocol",
    "frequency_matched": "safecircuits.features.intervene",
    "load_sae": "safecircuits.features.sae",
    "post_instruction_len": "safecircuits.features.ranking",
    "rank_features": "safecircuits.features.ranking",
    "single_feature_refusal_effects": "safecircuits.features.intervene",
    "splice_sae": "safecircuits.features.intervene",
    "select_features": "safecircuits.features.protocol",
    "train_sae": "safecircuits.features.sae",
    "validate_features": "safecircuits.features.protocol",
    "valid_hooks": "safecircuits.features.sae",
})
