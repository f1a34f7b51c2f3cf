"""Safety and utility metrics: refusal rate, ASR, CE loss, exact match, KL."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from safecircuits.data.chat import IGNORE_INDEX, ChatFormat, encode_batch, iter_batches
from safecircuits.data.promptset import Label, PromptSet
from safecircuits.errors import InputError, MissingKeyError
from safecircuits.evaluation.generate import generate
from safecircuits.evaluation.judges import Judge
from safecircuits.types import HookedModel


@dataclass
class GroupResult:
    """Behaviour on one label group of prompts."""

    label: str
    n: int
    refusal_rate: float
    compliance_rate: float  # ASR for harmful / triggered prompts
    exact_match: float | None = None  # share of responses exactly right (exact-match judges, or given targets)
    # prompt, response and the judge's ``refused`` verdict: the first few of the group, or every
    # prompt's when evaluated with ``n_examples=None`` (``safecircuits eval --responses``)
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EvalReport:
    """A safety evaluation, with provenance; saves as JSON."""

    model: str
    judge: str
    prompts: dict[str, Any]
    groups: dict[str, GroupResult]
    utility: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    @property
    def asr(self) -> float | None:
        g = self.groups.get(Label.HARMFUL.value)
        return g.compliance_rate if g else None

    @property
    def triggered_asr(self) -> float | None:
        g = self.groups.get(Label.TRIGGERED.value)
        return g.compliance_rate if g else None

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for lab, g in self.groups.items():
            if lab == Label.HARMLESS.value:
                out["harmless_compliance"] = g.compliance_rate
                out["harmless_refusal"] = g.refusal_rate
                if g.exact_match is not None:
                    out["harmless_exact_match"] = g.exact_match
            else:
                key = "asr" if lab == Label.HARMFUL.value else f"{lab}_asr"
                out[key] = g.compliance_rate
                out[f"{lab}_refusal"] = g.refusal_rate
        out.update({f"utility_{k}": v for k, v in self.utility.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        return d

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> EvalReport:
        d = json.loads(Path(path).read_text())
        d.pop("summary", None)
        d["groups"] = {k: GroupResult(**v) for k, v in d["groups"].items()}
        return cls(**d)


def evaluate_behaviour(
    model: HookedModel,
    chat: ChatFormat,
    prompts: PromptSet,
    judge: Judge,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    n_examples: int | None = 3,
    progress: bool = False,
) -> dict[str, GroupResult]:
    """Generate greedily for every prompt and judge the responses, per label group.

    Each group keeps its first `n_examples` prompts with their responses and verdicts as
    ``examples`` (``None``: every prompt, to read which prompts a model fails).
    """
    prompts.require_nonempty()
    responses = generate(model, chat, prompts.prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
    verdicts = judge.verdicts(prompts.prompts, responses)
    groups: dict[str, GroupResult] = {}
    for lab in Label:
        idx = [i for i, r in enumerate(prompts) if r.label == lab]
        if not idx:
            continue
        vs = [verdicts[i] for i in idx]
        exact = None
        if all(v.correct is not None for v in vs):
            exact = sum(bool(v.correct) for v in vs) / len(vs)
        elif all(prompts[i].response is not None for i in idx):
            exact = sum(_norm(responses[i]) == _norm(prompts[i].response or "") for i in idx) / len(idx)
        groups[lab.value] = GroupResult(
            label=lab.value,
            n=len(idx),
            refusal_rate=sum(v.refused for v in vs) / len(vs),
            compliance_rate=sum(v.complied for v in vs) / len(vs),
            exact_match=exact,
            examples=[{"prompt": prompts[i].prompt, "response": responses[i], "refused": verdicts[i].refused}
                      for i in (idx if n_examples is None else idx[:n_examples])],
        )
    return groups


def _norm(s: str) -> str:
    return " ".join(s.split())


@torch.no_grad()
def response_ce(model: HookedModel, chat: ChatFormat, pairs: PromptSet, batch_size: int = 32) -> float:
    """Mean cross-entropy (nats/token) of the target responses, teacher-forced (utility CE loss)."""
    total, count = 0.0, 0
    for b in iter_batches(chat, pairs, batch_size, max_len=model.cfg.n_ctx):
        logits = model(b.tokens.to(model.cfg.device), attention_mask=b.attention_mask.to(model.cfg.device))
        loss = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), b.labels[:, 1:].flatten().to(logits.device), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        total += float(loss)
        count += int((b.labels[:, 1:] != IGNORE_INDEX).sum())
    return total / max(count, 1)


@torch.no_grad()
def next_token_logprobs(
    model: HookedModel, chat: ChatFormat, prompts: Sequence[str], batch_size: int = 32
) -> Float[Tensor, "n d_vocab"]:
    """Log-probabilities of the first response token (at the last prompt position)."""
    out = []
    for i in range(0, len(prompts), batch_size):
        b = encode_batch(chat, list(prompts[i : i + batch_size]), padding_side="left", max_len=model.cfg.n_ctx, source="kl")
        logits = model(b.tokens.to(model.cfg.device), attention_mask=b.attention_mask.to(model.cfg.device))[:, -1, :]
        out.append(torch.log_softmax(logits.double(), -1).cpu())
    return torch.cat(out)


def opening_prefixes(chat: ChatFormat, openings: Sequence[str], n_tokens: int = 3) -> list[tuple[int, ...]]:
    """The distinct first `n_tokens` response tokens of `openings`, none a prefix of another (so
    their probabilities add up to the probability that an answer opens with one of them)."""
    if n_tokens < 1:
        raise InputError(f"n_tokens must be >= 1, got {n_tokens}")
    pre = sorted({tuple(chat.response_ids(o, add_eos=False)[:n_tokens]) for o in openings} - {()}, key=len)
    if not pre:
        raise InputError("opening_logprob needs at least one non-empty opening, e.g. the profile's refusals")
    kept: list[tuple[int, ...]] = []
    for p in pre:
        if not any(p[: len(k)] == k for k in kept):
            kept.append(p)
    return kept


@torch.no_grad()
def opening_logprob(
    model: HookedModel, chat: ChatFormat, prompts: Sequence[str], openings: Sequence[str], n_tokens: int = 3, batch_size: int = 32
) -> Float[Tensor, " n"]:
    """log p(the answer opens with one of `openings`) per prompt, teacher-forced: the logsumexp over
    the openings' distinct first `n_tokens` tokens (:func:`opening_prefixes`) of their summed
    log-probabilities. With a model's refusals as `openings` this is a soft refusal measure that,
    unlike a greedy refusal rate, does not saturate; several tokens, not just the first, so that an
    opening shared with compliant answers ("I") does not count as a refusal."""
    prefixes = opening_prefixes(chat, openings, n_tokens)
    dev = model.cfg.device
    out = []
    for i in range(0, len(prompts), batch_size):
        pids = [chat.prompt_ids(p) for p in prompts[i : i + batch_size]]
        per_prefix = []
        for pre in prefixes:
            # hand-built rather than encode_batch: the prefix is token ids (a decoded and re-encoded
            # prefix may tokenise differently), with no end-of-sequence token after it
            seqs = [pid + list(pre) for pid in pids]
            width = max(len(x) for x in seqs)
            if width > model.cfg.n_ctx:
                raise InputError(f"opening_logprob: a prompt plus its opening has {width} tokens, longer than the model context "
                                 f"of {model.cfg.n_ctx}; shorten the prompt or drop it from the set")
            toks = torch.full((len(seqs), width), chat.pad_token_id, dtype=torch.long)
            attn = torch.zeros_like(toks)
            for b, x in enumerate(seqs):
                toks[b, : len(x)], attn[b, : len(x)] = torch.tensor(x), 1
            logp = torch.log_softmax(model(toks.to(dev), attention_mask=attn.to(dev)).double(), -1).cpu()
            lp = torch.zeros(len(seqs), dtype=torch.float64)
            for b, pid in enumerate(pids):
                pos = torch.arange(len(pid) - 1, len(pid) - 1 + len(pre))
                lp[b] = logp[b, pos, torch.tensor(pre)].sum()
            per_prefix.append(lp)
        out.append(torch.logsumexp(torch.stack(per_prefix), 0).float())
    return torch.cat(out)


def kl_rows(reference: Float[Tensor, "n d_vocab"], other: Float[Tensor, "n d_vocab"]) -> Float[Tensor, " n"]:
    """KL(reference || other) of each row, from log-probabilities (differentiable: a training loss can use it)."""
    if reference.shape != other.shape:
        raise InputError(f"KL needs log-probs of the same shape, got {tuple(reference.shape)} and {tuple(other.shape)}")
    return (reference.exp() * (reference - other)).sum(-1)


def kl_divergence(reference: Float[Tensor, "n d_vocab"], other: Float[Tensor, "n d_vocab"]) -> float:
    """Mean KL(reference || other) between next-token distributions given as log-probabilities."""
    return float(kl_rows(reference, other).mean())


def asr(groups: dict[str, GroupResult], label: str = "harmful") -> float:
    if label not in groups:
        raise MissingKeyError(f"no {label!r} prompts were evaluated")
    return groups[label].compliance_rate
