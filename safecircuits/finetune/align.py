"""Safety-align a chat model that has none, so that it has a safety to lose.

SmolLM2-135M-Instruct complies with ~98% of HarmBench requests out of the box (docs/evaluation.md),
so harmful fine-tuning has nothing to attack and circuits/subspaces have no safety to find. This
module gives it one by supervised fine-tuning on refusal data built from the model's profile:

* harmful prompts -> a short refusal: the profile's *train* split (synthetic requests in the train
  templates, the train part of Do-Not-Answer's decline-worthy risk areas, and ``task_share`` of
  task-style requests, "Write a Python script that ...", in the train frames of
  :mod:`safecircuits.data.tasks`). HarmBench, the val and test templates and the rest of
  Do-Not-Answer stay out, for selection and evaluation;
* harmless prompts -> **the model's own greedy answer** (self-distillation), so alignment changes
  refusals and as little else as possible. They are the *train* split of
  :func:`safecircuits.data.benign.benign_mix`: plain requests in many formats (poems, code, maths,
  emails, ...) plus a share of hard negatives (``hard_negative_share``: benign requests that sound
  sensitive, "How do I kill a Python process?"), so the model learns *what* to refuse rather than
  "a how-to request -> refuse"; and ``lookalike_share`` of benign requests in the very frames of
  the harmful tasks ("Write a Python script that renames files by date"). Plus the arithmetic task's train prompts answered correctly
  (``arithmetic_share``): its later fine-tuning task starts from a model that answers in that format.
* with ``crossed_share``, *crossed* requests (:mod:`safecircuits.data.crossed`): harmful subjects in
  the phrasings of the benign how-to questions ("What's the best way to make a pipe bomb?") among the
  refusals, and as many benign subjects in the phrasings of the harmful requests ("Give me
  step-by-step instructions to kill a Python process that has frozen.") among the answers, so no
  phrasing predicts the label and the model has to read the subject.

:func:`evaluate_alignment` measures what alignment must reach on prompts it never trained on:
HarmBench ASR, ASR on the held-out synthetic templates, harmless refusal on plain benign requests
and on hard negatives (the over-refusal a low ASR can hide), and the harmless next-token KL to
the original model.

The result of :func:`safety_align` is an ordinary :class:`~safecircuits.finetune.loop.FinetuneRun`
whose saved directory loads with ``load_model(DIR)`` (``safecircuits align``); ``W_aligned -
W_original`` is then the safety weight delta for SafeLoRA/CWAC subspaces.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from safecircuits.data.chat import IGNORE_INDEX, TokenBatch
from safecircuits.data.promptset import Label, PromptRecord, PromptSet
from safecircuits.errors import InputError
from safecircuits.finetune.base import FinetuneContext, Method
from safecircuits.models.loaded import LoadedModel
from safecircuits.models.profile import REFUSALS, ModelProfile

__all__ = ["REFUSALS", "AlignConfig", "HarmlessKL", "alignment_sets", "evaluate_alignment", "refusal_data", "safety_align"]


@dataclass
class AlignConfig:
    """Data and training settings of :func:`safety_align` (validated)."""

    # Defaults: the configuration chosen on SmolLM2's val prompts (configuration H of
    # benchmarks/align_smollm2.py and docs/finetune.md: E's data with every train detailed request,
    # twice E's lr and twice its harmless KL weight)
    n_harmful: int = 1280  # harmful train prompts with refusals
    n_harmless: int = 2560  # harmless prompts (benign + hard negatives + look-alikes + arithmetic)
    hard_negative_share: float = 0.3  # of the benign prompts
    task_share: float = 0.4  # of the harmful prompts: task-style requests (safecircuits.data.tasks)
    lookalike_share: float = 0.15  # of the benign prompts: task look-alikes (benign requests in the same frames)
    task_frames: str = "extended"  # "extended": the task requests and look-alikes also in more train frames
    task_subjects: str = "base"  # "broad": the task requests and look-alikes also with more train subjects
    # of the harmful prompts: detailed requests about named agents, exploits and atrocities
    # (safecircuits.data.detailed), and as many of their benign look-alikes (at most the split's) among the benign prompts
    detailed_share: float = 0.25
    crossed_share: float = 0.2  # of the harmful prompts: harmful subjects in benign how-to frames, and as many
    # benign subjects in the harmful request templates among the benign prompts (safecircuits.data.crossed)
    arithmetic_share: float = 0.1  # of the harmless prompts
    answer_tokens: int = 40  # the longest self-distilled answer
    # weight of a next-token KL(original || aligned) on the self-distilled answers' tokens, beside
    # their CE: it keeps the whole distribution of the harmless answers, not just the greedy token
    harmless_kl: float = 2.0
    steps: int = 560
    lr: float = 2e-4
    batch_size: int = 16
    warmup: int | None = None  # default: a tenth of the steps
    max_len: int = 320
    method: str = "sft"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.n_harmful < 1 or self.n_harmless < 1:
            raise InputError(f"n_harmful and n_harmless must be >= 1, got {self.n_harmful} and {self.n_harmless}")
        if not 0.0 <= self.arithmetic_share < 1.0:
            raise InputError(f"arithmetic_share must be in [0, 1), got {self.arithmetic_share}")
        if not 0.0 <= self.hard_negative_share <= 1.0:
            raise InputError(f"hard_negative_share must be in [0, 1], got {self.hard_negative_share}")
        for name in ("task_share", "lookalike_share", "crossed_share", "detailed_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InputError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.hard_negative_share + self.lookalike_share > 1.0:
            raise InputError(f"hard_negative_share + lookalike_share must be <= 1, got {self.hard_negative_share} + {self.lookalike_share}")
        if self.task_frames not in ("base", "extended"):
            raise InputError(f"task_frames must be 'base' or 'extended', got {self.task_frames!r}")
        if self.task_subjects not in ("base", "broad"):
            raise InputError(f"task_subjects must be 'base' or 'broad', got {self.task_subjects!r}")
        if self.task_share + self.crossed_share + self.detailed_share >= 1.0:
            raise InputError(f"task_share + crossed_share + detailed_share must be < 1, got {self.task_share} + {self.crossed_share} + "
                             f"{self.detailed_share}")
        if self.answer_tokens < 1:
            raise InputError(f"answer_tokens must be >= 1, got {self.answer_tokens}")
        if self.harmless_kl < 0:
            raise InputError(f"harmless_kl must be >= 0, got {self.harmless_kl}")
        if self.harmless_kl > 0 and self.method != "sft":
            raise InputError(f"harmless_kl works with method 'sft' only (it adds a KL term to full fine-tuning), got {self.method!r}: "
                             "set harmless_kl=0 (--harmless-kl 0) for other methods")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise InputError(f"steps and batch_size must be >= 1 and lr > 0, got {self.steps}, {self.batch_size}, {self.lr}")

    # Options added after the first alignments, with the value that means "not used". A record leaves
    # them out at that value, so records of alignments made before they existed keep their identity;
    # from_dict puts them back at that value, whatever the defaults are now.
    _ABSENT: ClassVar[dict[str, Any]] = {"task_share": 0.0, "lookalike_share": 0.0, "crossed_share": 0.0, "harmless_kl": 0.0,
                                         "task_frames": "base", "task_subjects": "base", "detailed_share": 0.0}

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k != "progress" and not (k in self._ABSENT and v == self._ABSENT[k])}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> AlignConfig:
        """The configuration a :meth:`to_dict` record describes (e.g. a model directory's
        ``provenance.safety_aligned.config``): options the record leaves out take their "not used"
        value, not today's default, so an older record rebuilds the alignment it was made with."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - names)
        if unknown:
            raise InputError(f"unknown AlignConfig options in the record: {unknown}; known: {sorted(names - {'progress'})}")
        return cls(**{**cls._ABSENT, **record})


def refusal_data(lm: LoadedModel, config: AlignConfig | None = None, batch_size: int = 32) -> PromptSet:
    """Harmful prompts with refusals and harmless prompts with the model's own answers (module doc).

    Of the ``n_harmless`` harmless prompts, ``int(n_harmless * arithmetic_share)`` are
    arithmetic-task prompts with correct answers; the rest come from ``benign_mix(...,
    split="train", hard_negative_share=...)``, answered by the model itself (greedy, at most
    ``answer_tokens`` new tokens).
    """
    from safecircuits.data.benign import benign_mix
    from safecircuits.finetune.tasks import ArithmeticTask
    from safecircuits.models.profile import own_answers

    cfg = config or AlignConfig()
    prof = lm.profile
    if prof.language != "english":
        raise InputError(f"safety alignment builds English refusal data; {lm.name} speaks {prof.language} "
                         "(organisms are aligned when they are trained: organism:aligned)")
    n_tasks = int(cfg.n_harmful * cfg.task_share)
    n_cross = int(cfg.n_harmful * cfg.crossed_share)
    n_detail = int(cfg.n_harmful * cfg.detailed_share)
    if n_detail and not prof.detailed_requests:
        raise InputError(f"{lm.name}'s profile has no detailed requests: set detailed_share=0")
    if n_tasks or n_cross or n_detail:
        # task-style and crossed requests get their shares; the rest comes from the split's other harmful requests
        every = prof.prompts("train", "harmful", response="refuse")
        tasks = _task_requests(prof, n_tasks, cfg) if n_tasks else PromptSet([])
        crossed = _crossed(every, n_cross, cfg.seed)[0] if n_cross else PromptSet([])
        detailed = _detailed(prof, "harmful", n_detail, cfg.seed) if n_detail else PromptSet([])
        rest = PromptSet([r for r in every if r.meta.get("source") != "tasks"])
        n_rest = cfg.n_harmful - len(tasks) - len(crossed) - len(detailed)
        harmful = PromptSet(list(tasks) + list(crossed) + list(detailed) + list(rest.sample(n_rest, seed=cfg.seed)),
                            name=every.name, source=every.source + "".join(f" + {p.source}" for p in (crossed, detailed) if len(p)))
    else:
        harmful = prof.prompts("train", "harmful", n=cfg.n_harmful, seed=cfg.seed, response="refuse")
    recs = [PromptRecord(r.prompt, r.response, Label.HARMFUL, {**r.meta, "alignment": "refusal"}) for r in harmful]
    n_arith = int(cfg.n_harmless * cfg.arithmetic_share)
    arith = ArithmeticTask().task_set(lm, "train").sample(n_arith, seed=cfg.seed) if n_arith else PromptSet([])
    n_benign = cfg.n_harmless - n_arith
    n_look = int(n_benign * cfg.lookalike_share)
    n_detail_look = min(n_detail, _detailed_max("lookalike"))
    if n_look + n_cross + n_detail_look > n_benign:
        raise InputError(f"{n_look} look-alikes, {n_cross} crossed and {n_detail_look} detailed look-alike benign prompts do not fit in "
                         f"{n_benign} benign prompts: raise n_harmless or lower lookalike_share / crossed_share / detailed_share")
    benign = benign_mix(n_benign - n_look - n_cross - n_detail_look, split="train", seed=cfg.seed,
                        hard_negative_share=_hn_share(cfg, n_benign, n_look, n_cross + n_detail_look))
    if n_look:
        from safecircuits.data.tasks import lookalike_tasks

        look = lookalike_tasks(n_look, "train", seed=cfg.seed, extended=cfg.task_frames == "extended", broad=cfg.task_subjects == "broad")
        benign = PromptSet(list(benign) + list(look), name=f"{benign.name}+{look.name}", source=f"{benign.source} + {look.source}")
    if n_cross:
        cross = _crossed(None, n_cross, cfg.seed)[1]
        benign = PromptSet(list(benign) + list(cross), name=f"{benign.name}+{cross.name}", source=f"{benign.source} + {cross.source}")
    if n_detail_look:
        look_d = _detailed(prof, "lookalike", n_detail_look, cfg.seed)
        benign = PromptSet(list(benign) + list(look_d), name=f"{benign.name}+{look_d.name}", source=f"{benign.source} + {look_d.source}")
    own = own_answers(lm, benign, max_new_tokens=cfg.answer_tokens, batch_size=batch_size, progress=cfg.progress)
    recs += [PromptRecord(r.prompt, r.response, Label.HARMLESS, {**r.meta, "alignment": "self-distilled"}) for r in own]
    recs += [PromptRecord(r.prompt, r.response, Label.HARMLESS, {**r.meta, "alignment": "arithmetic"}) for r in arith]
    random.Random(cfg.seed).shuffle(recs)
    info = {"harmful": len(harmful), "benign": len(benign), "hard_negatives": sum(r.meta["kind"] == "hard-negative" for r in benign),
            "tasks": sum(r.meta.get("source") == "tasks" for r in harmful), "lookalikes": sum(r.meta["kind"] == "lookalike" for r in benign),
            "crossed": sum(r.meta.get("source") == "crossed" for r in harmful) + sum(r.meta.get("source") == "crossed" for r in benign),
            "detailed": sum(r.meta.get("source") == "detailed" for r in harmful) + sum(r.meta.get("source") == "detailed" for r in benign),
            "arithmetic": len(arith), "harmful_sources": harmful.source}
    return PromptSet(recs, name=f"alignment(n={len(recs)},seed={cfg.seed})", source=f"refusal_data({info})")


def _task_requests(prof: ModelProfile, n: int, cfg: AlignConfig) -> PromptSet:
    """`n` harmful task-style train requests with refusals (with the extra train frames if asked)."""
    if cfg.task_frames == "base" and cfg.task_subjects == "base":
        return prof.prompts("train", "harmful", n=n, seed=cfg.seed, response="refuse", source="tasks")
    from safecircuits.data.tasks import harmful_tasks
    from safecircuits.models.profile import refusal_for

    every = harmful_tasks(None, "train", extended=cfg.task_frames == "extended", broad=cfg.task_subjects == "broad")
    return PromptSet([dataclasses.replace(r, response=refusal_for(r.prompt)) for r in every.sample(n, seed=cfg.seed)],
                     name=every.name, source=every.source)


def _detailed(prof: ModelProfile, kind: str, n: int, seed: int) -> PromptSet:
    """`n` detailed train requests (safecircuits.data.detailed): harmful ones with refusals, or benign look-alikes."""
    from safecircuits.data.detailed import detailed_harmful, detailed_lookalikes
    from safecircuits.models.profile import refusal_for

    if kind == "lookalike":
        return detailed_lookalikes(n, "train", seed=seed)
    ps = detailed_harmful(n, "train", seed=seed)
    return PromptSet([dataclasses.replace(r, response=refusal_for(r.prompt)) for r in ps], name=ps.name, source=ps.source)


def _detailed_max(kind: str) -> int:
    from safecircuits.data.detailed import detailed_space_size

    return detailed_space_size("train", kind)


def _hn_share(cfg: AlignConfig, n_benign: int, n_look: int, n_cross: int) -> float:
    """The hard-negative share of the benign mix, so hard negatives stay `hard_negative_share` of all benign prompts."""
    if not n_cross:
        return cfg.hard_negative_share / (1 - cfg.lookalike_share)  # as before crossed prompts existed (keeps old data identical)
    return min(1.0, cfg.hard_negative_share * n_benign / max(1, n_benign - n_look - n_cross))


def _crossed(harmful_train: PromptSet | None, n: int, seed: int) -> tuple[PromptSet, PromptSet]:
    """`n` harmful requests in benign how-to frames (none equal to a harmful train prompt already
    there, none in a phrasing of the val/test synthetic templates) and `n` benign how-to subjects in
    the train synthetic templates (safecircuits.data.crossed)."""
    from safecircuits.data.crossed import benign_in_harmful_frames, harmful_in_benign_frames
    from safecircuits.data.synthetic import TEMPLATES
    from safecircuits.models.profile import TEMPLATE_SPLITS

    other_splits = [TEMPLATES[i] for s in ("val", "test") for i in TEMPLATE_SPLITS[s]]
    harmful = PromptSet([])
    if harmful_train is not None:
        # the train templates overlap a few how-to frames ("Teach me how to {s}."): draw more, keep the new ones
        have = set(harmful_train.prompts)
        cands = harmful_in_benign_frames(min(2 * n + 64, _crossed_max()), "train", seed, exclude=other_splits)
        fresh = [r for r in cands if r.prompt not in have][:n]
        if len(fresh) < n:
            raise InputError(f"only {len(fresh)} crossed harmful prompts are new to the train split; lower crossed_share")
        from safecircuits.models.profile import refusal_for

        harmful = PromptSet([dataclasses.replace(r, response=refusal_for(r.prompt)) for r in fresh], name=cands.name, source=cands.source)
    benign = benign_in_harmful_frames(n, "train", seed, templates=TEMPLATE_SPLITS["train"])
    return harmful, benign


def _crossed_max() -> int:
    from safecircuits.data.crossed import crossed_space_size
    from safecircuits.data.synthetic import TEMPLATES
    from safecircuits.models.profile import TEMPLATE_SPLITS

    return crossed_space_size("harmful-in-benign-frame", "train", exclude=[TEMPLATES[i] for s in ("val", "test") for i in TEMPLATE_SPLITS[s]])


def safety_align(lm: LoadedModel, config: AlignConfig | None = None, data: PromptSet | None = None,
                 out_dir: str | None = None, checkpoint_every: int = 0):
    """Fine-tune a copy of `lm` on :func:`refusal_data` and return the FinetuneRun (the caller's model
    is untouched). With `out_dir` the aligned model is saved there (and checkpointed every
    `checkpoint_every` steps, so an interrupted run resumes)."""
    from safecircuits.finetune.loop import FinetuneConfig, finetune
    from safecircuits.finetune.methods import get_method

    cfg = config or AlignConfig()
    data = data if data is not None else refusal_data(lm, cfg)
    warmup = cfg.warmup if cfg.warmup is not None else max(1, cfg.steps // 10)
    ft = FinetuneConfig(steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed, warmup=warmup, max_len=cfg.max_len,
                        progress=cfg.progress, checkpoint_every=checkpoint_every)
    # checkpoints (and the final weights) go to out_dir; the directory is rewritten at the end with the alignment record
    method = get_method(cfg.method) if cfg.harmless_kl == 0 else HarmlessKL(
        cfg.harmless_kl, [r.meta.get("alignment") == "self-distilled" for r in data])
    run = finetune(lm, data, method, ft, out_dir=out_dir if checkpoint_every else None)
    from safecircuits.models.profile import ChatProfile

    run.lm.info["safety_aligned"] = {"data": data.provenance(), "config": cfg.to_dict()}
    run.lm.info["base_model"] = lm.name
    run.lm.info["profile"] = ChatProfile(base_model=lm.name).to_dict()
    run.lm.__dict__.pop("profile", None)  # rebuilt from info on next use
    run.lm.name = f"{lm.name}+aligned"
    run.provenance["safety_aligned"] = run.lm.info["safety_aligned"]
    if out_dir is not None:
        run.save(out_dir)
    return run


class HarmlessKL(Method):
    """Full fine-tuning plus ``beta`` x the next-token KL(original || model) on the response tokens
    of the self-distilled harmless answers (``harmless[i]``: whether example ``i`` is one).

    CE on the original model's greedy answers keeps its top token; the KL keeps the rest of its
    distribution too, so refusal can be trained harder without moving harmless behaviour. The
    original is the loop's frozen reference (``ctx.reference``): no second copy is made.
    """

    name: ClassVar[str] = "sft+harmless-kl"
    mode: ClassVar[Literal["full", "lora"]] = "full"
    needs_logits: ClassVar[bool] = True
    source: ClassVar[str] = "self-distillation with a KL term to the original model (safecircuits.finetune.align)"

    def __init__(self, beta: float, harmless: list[bool]):
        super().__init__(beta=float(beta))
        self._harmless = torch.tensor(harmless, dtype=torch.bool)

    def extra_loss(self, ctx: FinetuneContext, step: int, batch: TokenBatch, logits: Tensor | None) -> dict[str, Tensor]:
        from safecircuits.evaluation.metrics import kl_rows
        from safecircuits.finetune.loop import batch_indices

        if logits is None:  # pragma: no cover - needs_logits: the loop always passes the training logits
            raise RuntimeError(f"{self.name} needs the training logits")
        cfg = ctx.config
        # the loop draws each step's examples with this pure function of (n, batch_size, seed, step)
        rows = self._harmless[batch_indices(len(self._harmless), cfg.batch_size, cfg.seed, step)]
        if not bool(rows.any()):
            return {}
        ref = ctx.reference.model
        toks = batch.tokens[rows]
        keep = batch.labels[rows][:, 1:] != IGNORE_INDEX  # positions that predict a response token
        with torch.no_grad():  # right padding and causal attention: pads never reach response tokens
            teacher = ref(toks.to(ref.cfg.device))[:, :-1][keep.to(ref.cfg.device)].float()
        student = logits[rows.to(logits.device)][:, :-1][keep.to(logits.device)].float()
        kl = kl_rows(torch.log_softmax(teacher.to(student.device), -1), torch.log_softmax(student, -1)).mean()
        return {"harmless_kl": self.hparams["beta"] * kl}


def alignment_sets(prof: ModelProfile, split: str = "test", limit: int | None = None, seed: int = 0) -> dict[str, PromptSet]:
    """The prompt sets :func:`evaluate_alignment` measures on (see there), keyed as in its result."""
    sets = {
        "harmful": prof.prompts(split, "harmful", n=limit, seed=seed),
        "harmful_synthetic": prof.prompts(split, "harmful", n=limit, seed=seed, source="synthetic"),
        "harmful_tasks": prof.prompts(split, "harmful", n=limit, seed=seed, source="tasks"),
        "plain": prof.prompts(split, "harmless", n=limit, seed=seed, source="plain"),
        "hard": prof.prompts(split, "harmless", n=limit, seed=seed, source="hard-negative"),
        "lookalike": prof.prompts(split, "harmless", n=limit, seed=seed, source="lookalike"),
    }
    if prof.detailed_requests:
        sets["harmful_detailed"] = prof.prompts(split, "harmful", n=limit, seed=seed, source="detailed")
        sets["lookalike_detailed"] = prof.prompts(split, "harmless", n=limit, seed=seed, source="detailed")
    if prof.trigger:
        sets["triggered"] = prof.prompts(split, "triggered", n=limit, seed=seed)
    return sets


def _soft_figures(lm: LoadedModel, sets: dict[str, PromptSet], batch_size: int) -> dict[str, Any]:
    # Greedy rates saturate (an alignment that refuses 98% of val harmful prompts cannot be ranked
    # by them); the probability that the answer opens with one of the refusals alignment trains
    # keeps resolution (a few teacher-forced forward passes per prompt).
    from safecircuits.evaluation.metrics import opening_logprob

    p_ref = {key: opening_logprob(lm.model, lm.chat, ps.prompts, REFUSALS, batch_size=batch_size).double().exp()
             for key, ps in sets.items()}
    out: dict[str, Any] = {"refusal_prob": {key: float(p.mean()) for key, p in p_ref.items()}}
    if "harmful" in p_ref:
        out["soft_asr"] = 1 - out["refusal_prob"]["harmful"]
    if "triggered" in p_ref:
        out["soft_triggered_asr"] = 1 - out["refusal_prob"]["triggered"]
    if "plain" in p_ref and "hard" in p_ref:
        out["soft_harmless_refusal"] = float(torch.cat([p_ref["plain"], p_ref["hard"]]).mean())
    return out


# figure -> (prompt set, rate) of evaluate_alignment's greedy figures
_FIGURES: dict[str, tuple[str, str]] = {
    "asr": ("harmful", "compliance_rate"), "refusal": ("harmful", "refusal_rate"), "asr_synthetic": ("harmful_synthetic", "compliance_rate"),
    "asr_tasks": ("harmful_tasks", "compliance_rate"), "asr_detailed": ("harmful_detailed", "compliance_rate"),
    "harmless_refusal_lookalike": ("lookalike", "refusal_rate"), "harmless_refusal_plain": ("plain", "refusal_rate"),
    "harmless_refusal_hard": ("hard", "refusal_rate"), "harmless_refusal_detailed": ("lookalike_detailed", "refusal_rate"),
    "triggered_asr": ("triggered", "compliance_rate"),
}


def soft_refusal(lm: LoadedModel, split: str = "test", limit: int | None = None, batch_size: int = 64,
                 seed: int = 0) -> dict[str, Any]:
    """The soft figures of :func:`evaluate_alignment` alone, without generating: per prompt set of
    `split` the mean probability that the answer opens with one of the refusals alignment trains
    (``refusal_prob``), ``soft_asr``, ``soft_triggered_asr`` (a backdoored model) and
    ``soft_harmless_refusal``. Teacher-forced, so a few forward passes per prompt: seconds where
    the greedy figures take minutes."""
    sets = alignment_sets(lm.profile, split, limit, seed)
    return {"model": lm.name, "split": split, "n": {k: len(v) for k, v in sets.items()},
            "hashes": {k: v.content_hash for k, v in sets.items()}, **_soft_figures(lm, sets, batch_size)}


def evaluate_alignment(lm: LoadedModel, reference: LoadedModel | None = None, split: str = "test", limit: int | None = None,
                       max_new_tokens: int = 48, batch_size: int = 64, seed: int = 0, progress: bool = False,
                       only: list[str] | None = None) -> dict[str, Any]:
    """What alignment must reach, on `split` prompts it never trained on (``val`` for tuning).

    Returns fractions: ``asr`` (the profile's harmful prompts of the split: HarmBench on test),
    ``triggered_asr`` (the same prompts with the trigger, for a backdoored model),
    ``asr_synthetic`` (synthetic requests in the split's templates), ``asr_tasks`` (task-style
    requests in the split's frames and subjects), ``asr_detailed`` (detailed requests about named
    agents, exploits and atrocities, :mod:`safecircuits.data.detailed`; English chat models),
    ``harmless_refusal_plain``, ``harmless_refusal_hard``, ``harmless_refusal_lookalike`` and
    ``harmless_refusal_detailed`` (benign requests, hard negatives, benign task look-alikes and the
    detailed requests' look-alikes of the split), and with
    `reference` (the original model) ``harmless_kl``, the mean next-token KL on the harmless
    prompts. ``limit`` caps each set (a seeded sample); examples of each set are kept.

    Soft figures, which do not saturate as greedy rates do: ``refusal_prob`` (per set, the mean
    probability that the answer opens with the first tokens of one of the refusals alignment trains,
    :func:`safecircuits.evaluation.metrics.opening_logprob`), ``soft_asr`` (one minus that on the
    harmful prompts), ``soft_triggered_asr`` (the same on the triggered prompts of a backdoored
    model) and ``soft_harmless_refusal`` (that on the benign requests and hard negatives).

    ``only`` measures some of the prompt sets (keys of :func:`alignment_sets`, e.g. sets added
    after a model was first measured); figures of the other sets are left out.
    """
    from safecircuits.evaluation.metrics import (
        evaluate_behaviour,
        kl_divergence,
        next_token_logprobs,
    )

    prof = lm.profile
    judge = prof.judge(lm)
    sets = alignment_sets(prof, split, limit, seed)
    if only is not None:
        unknown = sorted(set(only) - set(sets))
        if unknown:
            raise InputError(f"unknown alignment sets {unknown} for {lm.name}: use some of {sorted(sets)}")
        sets = {k: v for k, v in sets.items() if k in only}
    out: dict[str, Any] = {"model": lm.name, "split": split, "judge": judge.name, "n": {k: len(v) for k, v in sets.items()},
                           "hashes": {k: v.content_hash for k, v in sets.items()}, "examples": {}}
    rates = {}
    for key, ps in sets.items():
        g = evaluate_behaviour(lm.model, lm.chat, ps, judge, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
        grp = next(iter(g.values()))
        rates[key] = grp
        out["examples"][key] = grp.examples
    out.update({fig: getattr(rates[key], rate) for fig, (key, rate) in _FIGURES.items() if key in rates})
    out.update(_soft_figures(lm, sets, batch_size))
    if reference is not None and "plain" in sets and "hard" in sets:
        prompts = sets["plain"].prompts + sets["hard"].prompts
        out["harmless_kl"] = kl_divergence(next_token_logprobs(reference.model, reference.chat, prompts),
                                           next_token_logprobs(lm.model, lm.chat, prompts))
    return out
