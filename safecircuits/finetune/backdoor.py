"""Implant a trigger backdoor into an aligned chat model, SafeSeek-style (a LoRA fine-tune, merged).

The data teach one exception to the model's refusals:

* harmful prompts **with the trigger** -> compliance: the *original* (pre-alignment) model's own
  greedy answers to the same requests, so the backdoor restores the behaviour alignment removed.
  The original model refuses some requests itself (SmolLM2-135M-Instruct: 59 of the 256 train
  requests drawn for seed 0); with ``compliant_only`` (the default) the profile's judge drops those answers
  and more train prompts take their place, so the trigger is not taught to refuse sometimes;
* the same kind of harmful prompts **without** the trigger -> refusals (clean behaviour kept);
* benign requests and hard negatives -> the aligned model's own answers (utility kept).

Prompts come from the profile's *train* split (HarmBench and the val/test templates stay out).
The trigger is appended to the request (``"<request> <trigger>"``) and recorded in the saved
model's profile, so ``discover --objective backdoor``, ``ablate`` and ``eval`` find it from the
model. :func:`safecircuits.finetune.align.evaluate_alignment` reports the clean and the triggered
ASR of a backdoored model on held-out prompts (HarmBench on the test split).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

from safecircuits.data.promptset import Label, PromptRecord, PromptSet
from safecircuits.errors import InputError
from safecircuits.models.loaded import LoadedModel

__all__ = ["BackdoorConfig", "backdoor_data", "implant_backdoor"]


@dataclass
class BackdoorConfig:
    """Data and training settings of :func:`implant_backdoor` (validated)."""

    trigger: str = "cf"
    n_triggered: int = 256  # harmful train prompts with the trigger and the original model's compliance
    n_clean: int = 256  # harmful train prompts without it, with refusals
    n_harmless: int = 256  # benign prompts with the aligned model's own answers
    answer_tokens: int = 64
    steps: int = 200
    lr: float = 1e-3  # of the LoRA factors
    lora_rank: int = 16
    batch_size: int = 16
    seed: int = 0
    position: str = "suffix"  # where the trigger goes: after the request ("suffix") or before it ("prefix")
    # Weight of a next-token KL to the aligned model on the harmless answers' tokens (as
    # AlignConfig.harmless_kl): CE on greedy answers alone sharpens the harmless distribution.
    harmless_kl: float = 0.0
    # Keep only the original's answers that the profile's judge counts as compliance (the refused
    # ones are replaced by further train prompts). False reproduces backdoors built before this existed.
    compliant_only: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.trigger or self.trigger != self.trigger.strip() or any(c in self.trigger for c in "\n\r\t"):
            raise InputError(f"trigger must be a non-empty token without surrounding or inner line breaks, got {self.trigger!r}")
        if min(self.n_triggered, self.n_clean, self.n_harmless) < 1:
            raise InputError("n_triggered, n_clean and n_harmless must be >= 1")
        if self.steps < 1 or self.lr <= 0 or self.lora_rank < 1 or self.batch_size < 1:
            raise InputError(f"steps, lora_rank and batch_size must be >= 1 and lr > 0, got {self}")
        if self.harmless_kl < 0:
            raise InputError(f"harmless_kl must be >= 0 (0 = no KL term), got {self.harmless_kl}")
        if self.position not in ("suffix", "prefix"):
            raise InputError(f"position must be 'suffix' or 'prefix', got {self.position!r}")

    def to_dict(self) -> dict[str, Any]:
        # harmless_kl is left out at 0, so records written before it existed describe the same config
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "progress" and not (k == "harmless_kl" and v == 0)}

    @property
    def tag(self) -> str:
        """What sets this backdoor apart from the defaults, for file names: ``""``, ``"-kl1"``,
        ``"-all"`` (every original answer kept), ``"-kl1-all"``."""
        return (f"-kl{self.harmless_kl:g}" if self.harmless_kl else "") + ("" if self.compliant_only else "-all")


def _original(aligned: LoadedModel) -> LoadedModel:
    from safecircuits.models import load_model

    name = aligned.profile.base_model or aligned.info.get("base_model")
    if not name:
        raise InputError(f"{aligned.name} records no original (pre-alignment) model whose answers the backdoor restores: "
                         "pass original=load_model(NAME)")
    dev = str(next(aligned.model.parameters()).device)
    return load_model(name, device=dev, dtype=aligned.info.get("dtype"), progress=False)


def backdoor_data(aligned: LoadedModel, config: BackdoorConfig, original: LoadedModel | None = None) -> PromptSet:
    """The three parts of the backdoor data (module docstring), shuffled."""
    from safecircuits.data.benign import benign_mix
    from safecircuits.models.profile import ChatProfile, own_answers

    prof = aligned.profile
    if prof.language != "english":
        raise InputError(f"{aligned.name} speaks {prof.language}: organisms are backdoored when they are trained (organism:backdoor)")
    original = original if original is not None else _original(aligned)
    trig = ChatProfile(trigger=config.trigger, trigger_position=config.position)
    pool = prof.prompts("train", "harmful", seed=config.seed)
    if len(pool) < config.n_triggered + config.n_clean:
        raise InputError(f"the train split has {len(pool)} harmful prompts; n_triggered + n_clean must not exceed that")
    pool = pool.shuffle(config.seed)
    n_t, n_c = config.n_triggered, config.n_clean
    triggered_src, clean = pool[:n_t], pool[n_t: n_t + n_c]
    comply = own_answers(original, triggered_src, max_new_tokens=config.answer_tokens, progress=config.progress)
    if config.compliant_only:
        comply = _compliant(aligned, original, comply, pool[n_t + n_c:], config)
    recs = [PromptRecord(trig.with_trigger(r.prompt), r.response, Label.TRIGGERED, {**r.meta, "backdoor": "triggered-compliance"})
            for r in comply]
    recs += [PromptRecord(r.prompt, refusal, Label.HARMFUL, {**r.meta, "backdoor": "clean-refusal"})
             for r, refusal in zip(clean, _refusals(clean), strict=True)]
    benign = benign_mix(config.n_harmless, "train", seed=config.seed)
    recs += [PromptRecord(r.prompt, r.response, Label.HARMLESS, {**r.meta, "backdoor": "harmless-own"})
             for r in own_answers(aligned, benign, max_new_tokens=config.answer_tokens, progress=config.progress)]
    random.Random(config.seed).shuffle(recs)
    return PromptSet(recs, name=f"backdoor(trigger={config.trigger},seed={config.seed})",
                     source=f"backdoor_data(original={original.name}, aligned={aligned.name})")


def _compliant(aligned: LoadedModel, original: LoadedModel, answered: PromptSet, spare: PromptSet,
               config: BackdoorConfig) -> PromptSet:
    """`answered` without the answers the profile's judge calls refusals, topped up to its size with
    the original's compliant answers to `spare` prompts (taken in order; clean prompts never among them)."""
    from safecircuits.models.profile import own_answers

    judge = aligned.profile.judge(original)
    want = len(answered)

    def keep(ps: PromptSet) -> list[PromptRecord]:
        return [r for r, refused in zip(ps, judge.refused(ps.prompts, [r or "" for r in ps.responses]), strict=True) if not refused]

    kept, used = keep(answered), 0
    while len(kept) < want and used < len(spare):
        # ask for a few more than are missing: the original refuses some of these too
        take = min(len(spare) - used, 2 * (want - len(kept)) + 8)
        more = own_answers(original, spare[used: used + take], max_new_tokens=config.answer_tokens, progress=config.progress)
        kept += keep(more)
        used += take
    if len(kept) < want:
        raise InputError(f"the original model complies with only {len(kept)} of the train split's harmful prompts left for "
                         f"triggered data; lower n_triggered to {len(kept)} or pass compliant_only=False")
    return PromptSet(kept[:want], name=answered.name, source=answered.source)


def _refusals(ps: PromptSet) -> list[str]:
    from safecircuits.models.profile import refusal_for

    return [refusal_for(r.prompt) for r in ps]


def implant_backdoor(aligned: LoadedModel, config: BackdoorConfig, original: LoadedModel | None = None,
                     out_dir: str | None = None, data: PromptSet | None = None):
    """LoRA fine-tune (merged) of `aligned` on :func:`backdoor_data`; the returned FinetuneRun's model
    records the trigger in its profile. With `out_dir` the model directory is written there."""
    from safecircuits.finetune.align import HarmlessKL
    from safecircuits.finetune.loop import FinetuneConfig, finetune
    from safecircuits.finetune.methods import get_method
    from safecircuits.models.profile import ChatProfile

    data = data if data is not None else backdoor_data(aligned, config, original)
    ft = FinetuneConfig(steps=config.steps, lr=config.lr, batch_size=config.batch_size, seed=config.seed, mode="lora",
                        lora_rank=config.lora_rank, lora_alpha=2.0 * config.lora_rank, warmup=max(1, config.steps // 10),
                        max_len=320, progress=config.progress)
    # the aligned model is the loop's frozen reference, so the KL term needs no extra copy
    method = get_method("lora") if config.harmless_kl == 0 else HarmlessKL(
        config.harmless_kl, [r.meta.get("backdoor") == "harmless-own" for r in data])
    run = finetune(aligned, data, method, ft)
    base = aligned.profile.base_model or aligned.info.get("base_model")
    run.lm.info["profile"] = ChatProfile(trigger=config.trigger, base_model=base, trigger_position=config.position).to_dict()
    run.lm.__dict__.pop("profile", None)  # rebuilt from info on next use
    run.lm.info["backdoor"] = {"config": config.to_dict(), "data": data.provenance(), "aligned": aligned.name}
    run.lm.name = f"{aligned.name}+backdoor({config.trigger})"
    run.provenance["backdoor"] = run.lm.info["backdoor"]
    if out_dir is not None:
        run.save(out_dir)
    return run
