"""Measuring the refusal direction's three interventions on held-out prompts (CLI and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safecircuits.data.chat import ChatFormat
from safecircuits.data.promptset import PromptSet
from safecircuits.evaluation.generate import generate
from safecircuits.evaluation.judges import Judge
from safecircuits.evaluation.metrics import kl_divergence, next_token_logprobs
from safecircuits.subspaces.refusal import RefusalDirection
from safecircuits.types import HookedModel


def _rates(judge: Judge, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, float]:
    vs = judge.verdicts(list(prompts), list(responses))
    n = max(len(vs), 1)
    return {"refusal_rate": sum(v.refused for v in vs) / n, "compliance_rate": sum(v.complied for v in vs) / n}


def choose_coefficient(
    model: HookedModel,
    chat: ChatFormat,
    rd: RefusalDirection,
    harmless_val: PromptSet,
    judge: Judge,
    coeffs: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0),
    positions: Sequence[str] = ("all", "prompt"),
    target: float = 0.9,
    max_new_tokens: int = 32,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Activation-addition coefficient chosen on validation harmless prompts: the first
    (positions, coeff) in order (``all`` before ``prompt``, small coefficients first) whose refusal
    rate reaches `target`; otherwise the highest refusal rate. Returns (choice, the whole grid)."""
    grid: list[dict[str, Any]] = []
    for mode in positions:
        for c in coeffs:
            with rd.add(model, c, positions=mode):
                out = generate(model, chat, harmless_val.prompts, max_new_tokens=max_new_tokens)
            grid.append({"positions": mode, "coeff": c, **_rates(judge, harmless_val.prompts, out)})
    hit = [g for g in grid if g["refusal_rate"] >= target]
    choice = hit[0] if hit else max(grid, key=lambda g: g["refusal_rate"])
    return choice, grid


def intervention_effects(
    model: HookedModel,
    chat: ChatFormat,
    rd: RefusalDirection,
    harmful: PromptSet,
    harmless: PromptSet,
    judge: Judge,
    coeff: float = 1.0,
    positions: str = "all",
    max_new_tokens: int = 32,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Greedy behaviour of the model, under directional ablation, under activation addition and
    with orthogonalised weights, on `harmful` and `harmless` prompts; KL of the harmless next-token
    distributions under ablation; agreement between weight orthogonalisation and hook ablation."""
    hp, bp = harmful.prompts, harmless.prompts
    every = hp + bp

    def run(m: HookedModel) -> list[str]:
        return generate(m, chat, every, max_new_tokens=max_new_tokens, batch_size=batch_size)

    base_out = run(model)
    with rd.ablate(model):
        abl_out = run(model)
        abl_lp = next_token_logprobs(model, chat, bp, batch_size)
    with rd.add(model, coeff, positions=positions):
        add_out = generate(model, chat, bp, max_new_tokens=max_new_tokens, batch_size=batch_size)
    ortho = rd.orthogonalize(model)
    ortho_out = run(ortho)
    base_lp = next_token_logprobs(model, chat, bp, batch_size)
    ortho_lp = next_token_logprobs(ortho, chat, bp + hp, batch_size)
    with rd.ablate(model):
        abl_all_lp = next_token_logprobs(model, chat, bp + hp, batch_size)
    n_h = len(hp)

    def split(outs: list[str]) -> dict[str, dict[str, float]]:
        return {"harmful": _rates(judge, hp, outs[:n_h]), "harmless": _rates(judge, bp, outs[n_h:])}

    same = [a == b for a, b in zip(ortho_out, abl_out, strict=True)]
    return {
        "n_harmful": len(hp),
        "n_harmless": len(bp),
        "judge": judge.name,
        "baseline": split(base_out),
        "ablation": {**split(abl_out), "harmless_kl": kl_divergence(base_lp, abl_lp)},
        "addition": {"coeff": coeff, "positions": positions, "layer": rd.layer, "harmless": _rates(judge, bp, add_out)},
        "orthogonalized": {
            **split(ortho_out),
            "greedy_agreement_with_ablation": sum(same) / len(same),
            "max_abs_logprob_diff_vs_ablation": float((ortho_lp - abl_all_lp).abs().max()),
        },
        "examples": {
            "ablation_harmful": [{"prompt": p, "response": r} for p, r in list(zip(hp, abl_out[:n_h], strict=True))[:3]],
            "addition_harmless": [{"prompt": p, "response": r} for p, r in list(zip(bp, add_out, strict=True))[:3]],
        },
    }
