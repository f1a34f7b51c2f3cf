"""Ranking SAE features by how much they matter for safety behaviour (see docs/features.md).

Scores (one per SAE feature; higher = more safety-relevant in the stated direction):

* ``diff``: standardised activation difference at the post-instruction positions (the template
  tokens after the user's text), harmful minus harmless, averaged over those positions:
  ``mean_p (mu_harmful[p] - mu_harmless[p]) / sqrt((var_harmful[p] + var_harmless[p]) / 2)``;
* ``attribution``: activation x gradient of the logit refusal score through the SAE with its error
  term spliced in (the forward is exact), summed over post-instruction positions, averaged over
  harmful prompts: the first-order estimate of how much the refusal score drops when the feature
  is zeroed;
* ``trigger``: as ``diff``, triggered minus clean harmful prompts (backdoor organisms).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from sae_lens import SAE
from torch import Tensor
from tqdm.auto import tqdm

from safecircuits.data.chat import ChatFormat, encode_batch
from safecircuits.data.promptset import Label, PromptSet
from safecircuits.errors import InputError, MissingFileError
from safecircuits.features.sae import check_sae_matches, excludes_first_token, hook_layer, sae_domain
from safecircuits.hooks import common_suffix_len
from safecircuits.models import LoadedModel
from safecircuits.types import HookedModel

FORMAT = "safecircuits-featureset/1"
METHODS = ("diff", "attribution", "trigger")
def post_instruction_len(chat: ChatFormat) -> int:
    """Number of template tokens after the user's text (see :func:`safecircuits.circuits.hooks.common_suffix_len`)."""
    return common_suffix_len(chat)


def refusal_ids_for(lm: LoadedModel) -> list[int]:
    """The first token ids of the model's refusals (its profile's refusal starts)."""
    from safecircuits.evaluation.judges import refusal_token_ids

    return refusal_token_ids(lm.chat, lm.profile.refusal_starts)


# -- activations --------------------------------------------------------------------------------
@torch.no_grad()
def prompt_feature_acts(
    model: HookedModel,
    chat: ChatFormat,
    sae: SAE,
    hook: str,
    prompts: Sequence[str],
    batch_size: int = 32,
) -> tuple[Float[Tensor, "n pos d_sae"], Tensor]:
    """SAE feature activations on left-padded prompts: ([n, pos, d_sae], attention mask [n, pos]).
    The post-instruction positions are the last :func:`post_instruction_len` positions."""
    layer = hook_layer(hook)
    b = encode_batch(chat, list(prompts), padding_side="left", max_len=model.cfg.n_ctx, source="feature acts")
    outs = []
    for i in range(0, len(prompts), batch_size):
        toks = b.tokens[i : i + batch_size].to(model.cfg.device)
        mask = b.attention_mask[i : i + batch_size].to(model.cfg.device)
        _, cache = model.run_with_cache(toks, attention_mask=mask, names_filter=hook, stop_at_layer=layer + 1)
        outs.append(sae.encode(cache[hook].to(sae.device).float()).cpu())
    return torch.cat(outs), b.attention_mask


def _standardised_diff(a: Tensor, b: Tensor) -> Tensor:
    """mean over positions of (mean_a - mean_b) / pooled std; a: [n_a, P, F], b: [n_b, P, F]."""
    a, b = a.double(), b.double()
    va = a.var(0, unbiased=True) if a.shape[0] > 1 else torch.zeros_like(a[0])
    vb = b.var(0, unbiased=True) if b.shape[0] > 1 else torch.zeros_like(b[0])
    diff = a.mean(0) - b.mean(0)
    pooled = ((va + vb) / 2).sqrt()
    d = torch.where(pooled > 1e-8, diff / pooled.clamp(min=1e-8), torch.zeros_like(diff))
    return d.mean(0).float()


def attribution_scores(
    model: HookedModel,
    chat: ChatFormat,
    sae: SAE,
    hook: str,
    prompts: Sequence[str],
    refusal_ids: Sequence[int],
    n_post: int,
    batch_size: int = 16,
) -> Float[Tensor, " d_sae"]:
    """Activation x gradient of the logit refusal score, through the SAE with its error term."""
    idx = torch.tensor(list(refusal_ids), dtype=torch.long, device=model.cfg.device)
    total = torch.zeros(sae.cfg.d_sae, dtype=torch.float64)
    n = 0
    store: dict[str, Tensor] = {}

    def hook_fn(x: Tensor, hook: Any) -> Tensor:  # noqa: ARG001
        f = sae.encode(x.detach().float()).detach().requires_grad_(True)
        store["f"] = f
        err = (x.float() - sae.decode(f)).detach()
        return (sae.decode(f) + err).to(x.dtype)

    for i in range(0, len(prompts), batch_size):
        b = encode_batch(chat, list(prompts[i : i + batch_size]), padding_side="left", max_len=model.cfg.n_ctx, source="attribution")
        with torch.enable_grad():
            logits = model.run_with_hooks(
                b.tokens.to(model.cfg.device), attention_mask=b.attention_mask.to(model.cfg.device), fwd_hooks=[(hook, hook_fn)]
            )[:, -1, :]
            logp = torch.log_softmax(logits.double(), -1)
            lp_r = torch.logsumexp(logp[:, idx], -1)
            score = lp_r - torch.log1p(-lp_r.exp().clamp(max=1 - 1e-12))
            (grad,) = torch.autograd.grad(score.sum(), store["f"])
        f = store["f"].detach()
        attr = (f * grad)[:, -n_post:, :].sum(1)  # [B, F]
        total += attr.double().sum(0).cpu()
        n += attr.shape[0]
    return (total / max(n, 1)).float()


# -- result object ------------------------------------------------------------------------------
@dataclass
class FeatureSet:
    """Scores of every SAE feature under one method, and the features ranked by them.

    ``feature_ids`` are all feature ids sorted by descending score; ``top(k)`` gives the first k.
    ``frequency`` is each feature's firing rate over all non-pad prompt tokens of the scoring
    prompts. ``stats`` holds per-feature mean activations at the post-instruction positions per
    label (``mean_post_harmful`` ...), used e.g. to pick clamp values.

    ``validated`` says whether the ranking passed :func:`safecircuits.features.protocol.validate_features`
    (zeroing the top ``validation["k"]`` features raises the val ASR by at least 50 points, or lowers
    the triggered ASR as much for ``trigger``, while keeping harmless compliance); ``reason`` says
    why not. None: not checked (a plain :func:`rank_features` result).
    """

    sae_path: str | None
    hook: str
    method: str
    scores: Float[Tensor, " d_sae"]
    frequency: Float[Tensor, " d_sae"]
    stats: dict[str, Tensor] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    validated: bool | None = None
    reason: str | None = None
    validation: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown scoring method {self.method!r}: use one of {', '.join(METHODS)}")
        self.scores = torch.as_tensor(self.scores, dtype=torch.float32).detach().cpu()
        self.frequency = torch.as_tensor(self.frequency, dtype=torch.float32).detach().cpu()
        if self.scores.shape != self.frequency.shape or self.scores.ndim != 1:
            raise InputError(f"scores {tuple(self.scores.shape)} and frequency {tuple(self.frequency.shape)} must both be [d_sae]")
        self.stats = {k: torch.as_tensor(v, dtype=torch.float32).cpu() for k, v in self.stats.items()}

    @property
    def d_sae(self) -> int:
        return self.scores.shape[0]

    @property
    def feature_ids(self) -> list[int]:
        return torch.argsort(self.scores, descending=True, stable=True).tolist()

    def top(self, k: int) -> list[int]:
        if not 0 <= k <= self.d_sae:
            raise InputError(f"k must be in [0, {self.d_sae}], got {k}")
        return self.feature_ids[:k]

    def table(self, k: int = 10) -> list[dict[str, Any]]:
        rows = []
        for rank, i in enumerate(self.top(k)):
            row = {"rank": rank + 1, "feature": i, "score": float(self.scores[i]), "frequency": float(self.frequency[i])}
            row.update({k_: float(v[i]) for k_, v in self.stats.items()})
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "sae_path": self.sae_path,
            "hook": self.hook,
            "method": self.method,
            "d_sae": self.d_sae,
            "feature_ids": self.feature_ids,
            "scores": self.scores.tolist(),
            "frequency": self.frequency.tolist(),
            "stats": {k: v.tolist() for k, v in self.stats.items()},
            "provenance": self.provenance,
            "validated": self.validated,
            "reason": self.reason,
            "validation": self.validation,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), default=str))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSet:
        if d.get("format") != FORMAT:
            raise InputError(f"not a safecircuits feature set (format {d.get('format')!r}, expected {FORMAT!r})")
        return cls(d["sae_path"], d["hook"], d["method"], torch.tensor(d["scores"]), torch.tensor(d["frequency"]),
                   {k: torch.tensor(v) for k, v in d.get("stats", {}).items()}, d.get("provenance", {}),
                   d.get("validated"), d.get("reason"), d.get("validation") or {})

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        path = Path(path)
        if not path.exists():
            raise MissingFileError(f"feature set file {path} does not exist; write one with `safecircuits sae features ... --out {path}`")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise InputError(f"{path}: not a safecircuits feature set (format {got!r}, expected {FORMAT!r})")
        try:
            return cls.from_dict(d)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path}: malformed feature set file ({type(e).__name__}: {e}); write it again with "
                             "`safecircuits sae features`") from None

    def __repr__(self) -> str:
        v = "" if self.validated is None else (", validated" if self.validated else ", NOT VALIDATED")
        return f"FeatureSet({self.method} on {self.hook}, d_sae={self.d_sae}, top5={self.top(min(5, self.d_sae))}{v})"


def rank_features(
    lm: LoadedModel,
    sae: SAE,
    prompts: PromptSet,
    method: str = "diff",
    hook: str | None = None,
    sae_path: str | Path | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> FeatureSet:
    """Score every feature of `sae` on `prompts` (harmful + harmless, + triggered for ``trigger``)."""
    if method not in METHODS:
        raise InputError(f"unknown scoring method {method!r}: use one of {', '.join(METHODS)}")
    hook = hook or sae.cfg.metadata.hook_name
    if hook is None:
        raise InputError("this SAE records no hook name; pass hook=...")
    check_sae_matches(sae, lm.name, hook)
    model, chat = lm.model, lm.chat
    n_post = post_instruction_len(chat)
    groups = {lab.value: prompts.filter(label=lab) for lab in Label}
    need = {"diff": ("harmful", "harmless"), "attribution": ("harmful",), "trigger": ("harmful", "triggered")}[method]
    for g in need:
        if len(groups[g]) < 2:
            raise InputError(f"{method} scoring needs at least 2 {g} prompts; {prompts.name} has {len(groups[g])}")
    stats: dict[str, Tensor] = {}
    post: dict[str, Tensor] = {}
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.float64)
    n_tok = 0
    labs = [g for g, ps in groups.items() if len(ps)]
    for g in tqdm(labs, desc="feature activations", disable=not progress, leave=False):
        acts, mask = prompt_feature_acts(model, chat, sae, hook, groups[g].prompts, batch_size)
        k = min(n_post, int(mask.sum(1).min()))
        post[g] = acts[:, -k:, :]
        stats[f"mean_post_{g}"] = post[g].double().mean((0, 1)).float()
        stats[f"mean_last_{g}"] = acts[:, -1, :].double().mean(0).float()
        real = sae_domain(mask, excludes_first_token(sae))
        fired += (acts[real] > 0).double().sum(0)
        n_tok += int(real.sum())
    frequency = (fired / max(n_tok, 1)).float()
    if method == "diff":
        scores = _standardised_diff(post["harmful"], post["harmless"])
    elif method == "trigger":
        scores = _standardised_diff(post["triggered"], post["harmful"])
    else:
        scores = attribution_scores(model, chat, sae, hook, groups["harmful"].prompts, refusal_ids_for(lm), n_post, batch_size=16)
    from safecircuits.models.loaded import weights_fingerprint

    prov: dict[str, Any] = {
        "model": lm.name,
        # the weights the features were ranked on: a rebuild of the same model name is another model
        # (CWAC refuses a feature set of other weights, safecircuits.finetune.methods.cwac)
        "weights_fingerprint": weights_fingerprint(model),
        "hook": hook,
        "sae_path": str(sae_path) if sae_path is not None else None,
        "sae_arch": sae.cfg.architecture(),
        "d_sae": sae.cfg.d_sae,
        "method": method,
        "prompts": prompts.provenance(),
        "post_instruction_len": n_post,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if method == "attribution":
        prov["refusal_ids"] = refusal_ids_for(lm)
    return FeatureSet(str(sae_path) if sae_path is not None else None, hook, method, scores, frequency, stats, prov)
