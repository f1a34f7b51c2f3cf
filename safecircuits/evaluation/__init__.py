"""Safety evaluation: batched greedy generation, refusal judges, ASR, utility, KL."""

from __future__ import annotations

from safecircuits._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "EvalReport": "safecircuits.evaluation.metrics",
    "JUDGES": "safecircuits.evaluation.judges",
    "Judge": "safecircuits.evaluation.judges",
    "evaluate_behaviour": "safecircuits.evaluation.metrics",
    "evaluate_model": "safecircuits.evaluation.report",
    "generate": "safecircuits.evaluation.generate",
    "get_judge": "safecircuits.evaluation.judges",
    "kl_divergence": "safecircuits.evaluation.metrics",
    "next_token_logprobs": "safecircuits.evaluation.metrics",
    "refusal_score": "safecircuits.evaluation.judges",
    "register_judge": "safecircuits.evaluation.judges",
    "report_table": "safecircuits.evaluation.report",
    "response_ce": "safecircuits.evaluation.metrics",
})
