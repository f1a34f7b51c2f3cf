"""PACT: constrained safety tokens (arXiv 2603.07445; code github.com/Glresearch1/PACT).

**Safety tokens** (``setup``). The refusal responses of the safety prompts are teacher-forced
through the aligned model (``ctx.reference``) and the base model (``ctx.artifacts["base"]``). At
every response step t both give next-token distributions; each vocabulary token gets

    score(w) = mean_t [p_aligned(w | t) - p_base(w | t)].

The candidate set S is the top-k tokens by mean aligned probability (PACT uses k = 50..200; for
the organisms, whose whole vocabulary is ~470 words, we cap k at 10% of the vocabulary, so the
default k = 100 becomes 47). ``v = L2normalise(zscore(score[S]))``.

**Loss** (``extra_loss``), on the answer positions of each training batch:

    L = CE + λ · mean_t KL(q_t || softmax(student_t[S] / T)) · T²,   T = 2, λ = 1
    q_t ∝ softmax(ref_t[S] / T) · max(v, 0)
    ref_t = (1 - c_t) · ref_full_t + c_t · ref_post_t       (logits, restricted to S)
    c_t = sigmoid(2 (I_trn - I_post)) · exp(-max(t - 8, 0) / 8)

as in PACT's code: ``ref_full`` is the frozen reference model on the full conversation,
``ref_post`` the reference on the response alone after an empty user turn (our chat format's
``prompt_text("")``; PACT uses the bare assistant header); ``I = (top-p count at p = 0.9 of the
softmax over S) / |S|`` — how spread out the student (I_trn) and the prompt-free reference
(I_post) are over the safety tokens. When the student is more uncertain than the prompt-free
reference, the gate leans on the prompt-free reference (whose distribution over safety tokens
the fine-tuning data cannot have shifted). The gate is computed without gradient.

LoRA, r = 8 on W_Q and W_V (``lora_rank``, ``lora_targets``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from safecircuits.data.chat import IGNORE_INDEX, TokenBatch, encode_batch
from safecircuits.errors import InputError, InputTypeError
from safecircuits.finetune.base import FinetuneContext, Method

__all__ = ["PACT", "pact_kl", "safety_tokens"]


@torch.no_grad()
def _response_probs(lm, prompts: list[str], responses: list[str], batch_size: int = 32) -> Float[Tensor, "n_steps d_vocab"]:
    """Next-token probabilities at every teacher-forced response step."""
    out = []
    for i in range(0, len(prompts), batch_size):
        b = encode_batch(lm.chat, prompts[i : i + batch_size], responses[i : i + batch_size], max_len=lm.model.cfg.n_ctx,
                         padding_side="right", source="pact safety tokens")
        logits = lm.model(b.tokens.to(lm.model.cfg.device), attention_mask=b.attention_mask.to(lm.model.cfg.device))
        sel = b.labels[:, 1:] != IGNORE_INDEX
        out.append(torch.softmax(logits[:, :-1][sel.to(logits.device)].double(), -1).cpu())
    return torch.cat(out)


def safety_tokens(aligned, base, refusals, k: int = 100) -> dict[str, Any]:
    """PACT's safety tokens: ids S (top-k by aligned probability on refusals), their score and v.

    `refusals`: a PromptSet of harmful prompts with refusal responses.
    """
    recs = [r for r in refusals if r.response is not None]
    if not recs:
        raise InputError("PACT safety tokens need harmful prompts with refusal responses (task.safety_data)")
    prompts, responses = [r.prompt for r in recs], [r.response for r in recs]
    pa = _response_probs(aligned, prompts, responses)
    pb = _response_probs(base, prompts, responses)
    d_vocab = pa.shape[1]
    k_eff = max(2, min(int(k), d_vocab // 10))
    score = (pa - pb).mean(0)
    ids = torch.argsort(pa.mean(0), descending=True, stable=True)[:k_eff]
    s = score[ids]
    z = (s - s.mean()) / s.std().clamp_min(1e-12)
    v = z / z.norm().clamp_min(1e-12)
    return {"ids": ids, "v": v.float(), "score": s.float(), "k": k_eff, "d_vocab": d_vocab}


def _top_p_count(probs: Tensor, p0: float) -> Tensor:
    sorted_probs, _ = probs.sort(dim=-1, descending=True)
    return ((sorted_probs.cumsum(-1) < p0).sum(-1) + 1).to(probs.dtype)


def pact_kl(
    student: Float[Tensor, "batch steps n_s"],
    ref_full: Float[Tensor, "batch steps n_s"],
    ref_post: Float[Tensor, "batch steps n_s"],
    v: Float[Tensor, " n_s"],
    mask: Float[Tensor, "batch steps"],
    temperature: float = 2.0,
    top_p: float = 0.9,
    alpha: float = 2.0,
    prefix: int = 8,
    tau: float = 8.0,
) -> Tensor:
    """PACT's gated, direction-weighted KL on the safety-token logits (mean over valid steps)."""
    with torch.no_grad():
        n_s = float(student.shape[-1])
        i_trn = _top_p_count(torch.softmax(student.detach(), -1), top_p) / n_s
        i_post = _top_p_count(torch.softmax(ref_post, -1), top_p) / n_s
        t = torch.arange(student.shape[1], device=student.device, dtype=student.dtype)[None, :]
        c = torch.sigmoid(alpha * (i_trn - i_post)) * torch.exp(-(t - prefix).clamp_min(0.0) / tau) * mask
        ref = (1.0 - c[..., None]) * ref_full + c[..., None] * ref_post
        q = torch.softmax(ref / temperature, -1) * v.clamp_min(0.0)[None, None, :].to(ref.dtype)
        q = q / q.sum(-1, keepdim=True).clamp_min(1e-12)
    log_p = F.log_softmax(student / temperature, -1)
    kl = (q * (q.clamp_min(1e-12).log() - log_p)).sum(-1) * temperature**2
    return (kl * mask).sum() / mask.sum().clamp_min(1.0)


def _answer_slices(logits: Tensor, labels: Tensor, max_a: int) -> tuple[Tensor, Tensor]:
    """Logits predicting each response token, left-aligned: [batch, max_a, vocab] and the valid mask."""
    bsz, _, vocab = logits.shape
    out = logits.new_zeros(bsz, max_a, vocab)
    mask = logits.new_zeros(bsz, max_a)
    for i in range(bsz):
        pos = (labels[i] != IGNORE_INDEX).nonzero().flatten()
        if pos.numel() == 0:
            continue
        s, a = int(pos[0]), int(pos.numel())
        out[i, :a] = logits[i, s - 1 : s - 1 + a]
        mask[i, :a] = 1.0
    return out, mask


class PACT(Method):
    """PACT: keep the distribution over safety tokens close to a gated reference (LoRA r=8 on W_Q, W_V)."""

    name: ClassVar[str] = "pact"
    needs_logits: ClassVar[bool] = True
    mode: ClassVar[Literal["full", "lora"]] = "lora"
    needs: ClassVar[tuple[str, ...]] = ("base",)
    source: ClassVar[str] = "arXiv 2603.07445 (PACT); code github.com/Glresearch1/PACT"
    lora_rank: ClassVar[int] = 8
    lora_targets: ClassVar[tuple[str, ...]] = ("W_Q", "W_V")
    defaults: ClassVar[dict[str, Any]] = {"k": 100, "lam": 1.0, "temperature": 2.0, "top_p": 0.9, "alpha": 2.0, "prefix": 8, "tau": 8.0, "targets": ("W_Q", "W_V")}

    def __init__(self, **hparams: Any):
        bad = set(hparams) - set(self.defaults)
        if bad:
            raise InputError(f"{self.name}: unknown hyperparameters {sorted(bad)}; use some of {sorted(self.defaults)}")
        h = {**self.defaults, **hparams}
        h["targets"] = tuple(h["targets"])
        super().__init__(**h)
        self.lora_targets = h["targets"]  # type: ignore[misc]  # read by the benchmark for FinetuneConfig.lora_targets

    def setup(self, ctx: FinetuneContext) -> None:
        from safecircuits.models.loaded import LoadedModel

        base = ctx.artifacts.get("base")
        if base is None:
            raise InputError("pact: needs ctx.artifacts['base'], the pre-alignment base model (e.g. organism:base)")
        if isinstance(base, str):
            from safecircuits.models import load_model

            base = load_model(base, progress=False)
        if not isinstance(base, LoadedModel):
            raise InputTypeError(f"pact: ctx.artifacts['base'] must be a model name or LoadedModel, got {type(base).__name__}")
        if ctx.safety_prompts is None:
            raise InputError("pact: needs ctx.safety_prompts (harmful prompts with refusal targets) to find the safety tokens")
        refusals = ctx.safety_prompts.filter(label="harmful", has_response=True)
        st = safety_tokens(ctx.reference, base, refusals, int(self.hparams["k"]))
        ctx.state["pact"] = st
        chat = ctx.reference.chat
        ctx.state["pact_header"] = chat.prompt_ids("") if hasattr(chat, "prompt_ids") else []

    def _post_batch(self, ctx: FinetuneContext, batch: TokenBatch) -> tuple[Tensor, Tensor, int]:
        """Each example's response after an empty user turn: tokens, attention mask, header length."""
        header = list(ctx.state["pact_header"])
        seqs = []
        for i in range(len(batch)):
            pos = (batch.labels[i] != IGNORE_INDEX).nonzero().flatten()
            seqs.append(header + batch.tokens[i, pos].tolist())
        n = max(len(s) for s in seqs)
        pad = ctx.reference.chat.pad_token_id
        toks = torch.full((len(seqs), n), pad, dtype=torch.long)
        att = torch.zeros(len(seqs), n, dtype=torch.long)
        for i, s in enumerate(seqs):
            toks[i, : len(s)] = torch.tensor(s)
            att[i, : len(s)] = 1
        return toks, att, len(header)

    def extra_loss(self, ctx: FinetuneContext, step: int, batch: TokenBatch, logits: Tensor | None) -> dict[str, Tensor]:
        h = self.hparams
        if float(h["lam"]) == 0.0:
            return {}
        if logits is None:  # pragma: no cover - needs_logits: the loop always passes PACT its training logits
            raise RuntimeError(f"{self.name} needs the training logits")
        st = ctx.state["pact"]
        ids = st["ids"].to(logits.device)
        labels = batch.labels.to(logits.device)
        max_a = int((labels != IGNORE_INDEX).sum(1).max())
        if max_a == 0:
            return {}
        ref_model = ctx.reference.model
        dev = ref_model.cfg.device
        with torch.no_grad():
            full = ref_model(batch.tokens.to(dev), attention_mask=batch.attention_mask.to(dev))
            toks, att, hl = self._post_batch(ctx, batch)
            post = ref_model(toks.to(dev), attention_mask=att.to(dev))
        stud, mask = _answer_slices(logits, labels, max_a)
        ref_full, _ = _answer_slices(full.to(logits.device), labels, max_a)
        ref_post = post[:, hl - 1 : hl - 1 + max_a].to(logits.device)
        if ref_post.shape[1] < max_a:  # pragma: no cover - the post batch always holds every response token
            ref_post = F.pad(ref_post, (0, 0, 0, max_a - ref_post.shape[1]))
        kl = pact_kl(stud[..., ids].float(), ref_full[..., ids].float(), ref_post[..., ids].float(), st["v"].to(logits.device), mask.float(),
                     temperature=float(h["temperature"]), top_p=float(h["top_p"]), alpha=float(h["alpha"]),
                     prefix=int(h["prefix"]), tau=float(h["tau"]))
        return {"pact_kl": float(h["lam"]) * kl}
