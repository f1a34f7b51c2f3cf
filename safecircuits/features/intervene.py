"""Causal interventions on SAE features: splice an SAE into a hook, zero or clamp features, and
measure the behavioural effect against frequency-matched random features.

Splicing keeps the SAE's error term, so only the edited features change anything:
``x' = x + mask_pos * (decode(f') - decode(f))`` with ``f = encode(x)`` and ``f'`` = f with the
ablated features zeroed and the clamped ones set to their values. With nothing edited ``x' = x``
exactly (bit for bit), and the change lies in the span of the edited features' decoder rows. An SAE
trained without each sequence's first token (an attention sink) never edits that token.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from tqdm.auto import tqdm

from safecircuits.data.promptset import Label, PromptSet
from safecircuits.errors import InputError
from safecircuits.evaluation.metrics import GroupResult, evaluate_behaviour
from safecircuits.features.ranking import FeatureSet, post_instruction_len, refusal_ids_for
from safecircuits.features.sae import check_hook, excludes_first_token, first_token_mask, hook_layer
from safecircuits.models import LoadedModel
from safecircuits.types import HookedModel

Positions = Literal["all"] | int


class _FirstTokens:
    """Where each row's first real token is in the current forward of one block, read from the
    ``attention_mask`` and KV-cache entry that the block is called with (a forward pre-hook on the
    block: TransformerLens hook points see activations only, and ``run_with_hooks`` calls the
    model's ``forward`` directly, past any pre-hook on the model itself)."""

    def __init__(self) -> None:
        self.mask: Tensor | None = None
        self.past = 0

    def pre_hook(self, module: Any, args: tuple, kwargs: dict) -> None:  # noqa: ARG002
        entry = kwargs.get("past_kv_cache_entry")
        keys = getattr(entry, "past_keys", None)
        self.past = int(keys.shape[1]) if keys is not None else 0
        am = kwargs.get("attention_mask")
        self.mask = None if am is None else first_token_mask(am)  # over past + current positions

    def at(self, x: Tensor) -> Tensor | None:
        """Bool [batch, pos] of the first tokens in activation `x`, or None where there are none."""
        b, t = x.shape[:2]
        if self.mask is not None and self.mask.shape[0] == b and self.mask.shape[1] >= t:
            return self.mask[:, -t:].to(x.device)
        if self.past > 0:
            return None  # continues a KV cache: the first token went by in an earlier forward
        m = torch.zeros((b, t), dtype=torch.bool, device=x.device)
        m[:, 0] = True
        return m


def _edit_hook(sae: SAE, ablate: Tensor, clamp_ids: Tensor, clamp_vals: Tensor, positions: Positions,
               first: _FirstTokens | None = None):
    def hook(x: Tensor, hook: Any) -> Tensor:  # noqa: ARG001
        if isinstance(positions, int) and x.shape[1] == 1:
            return x  # KV-cached generation step: a response token, not a post-instruction position
        xs = x.to(sae.device).float()
        f = sae.encode(xs)
        f2 = f.clone()
        if ablate.numel():
            f2[..., ablate.to(f.device)] = 0.0
        if clamp_ids.numel():
            f2[..., clamp_ids.to(f.device)] = clamp_vals.to(f.device, f.dtype)
        delta = sae.decode(f2) - sae.decode(f)
        if isinstance(positions, int):
            keep = torch.zeros(x.shape[1], dtype=delta.dtype, device=delta.device)
            keep[-positions:] = 1.0
            delta = delta * keep[None, :, None]
        skip = first.at(x) if first is not None else None
        if skip is not None:
            delta = delta.masked_fill(skip[..., None].to(delta.device), 0.0)
        return x + delta.to(x.device, x.dtype)

    return hook


@contextmanager
def splice_sae(
    model: HookedModel,
    sae: SAE,
    hook: str | None = None,
    ablate: Sequence[int] = (),
    clamp: Mapping[int, float] | None = None,
    positions: Positions = "all",
) -> Iterator[HookedModel]:
    """Context manager: `model` with `sae` spliced in at `hook` (with its error term), features in
    `ablate` zeroed and those in `clamp` set to the given values.

    ``positions="all"`` edits every position of every forward (prompt and generated tokens);
    an int ``n`` edits only the last n positions of multi-token forwards, i.e. the post-instruction
    template tokens of left-padded prompts (``post_instruction_len(chat)``), and leaves KV-cached
    single-token generation steps alone. Hooks are removed on exit, even when the body raises.
    """
    hook = hook or sae.cfg.metadata.hook_name
    if hook is None:
        raise InputError("this SAE records no hook name; pass hook=...")
    check_hook(model, hook)
    if sae.cfg.d_in != model.cfg.d_model:
        raise InputError(f"SAE d_in {sae.cfg.d_in} does not match the model's d_model {model.cfg.d_model}")
    clamp = dict(clamp or {})
    ids = list(ablate) + list(clamp)
    bad = [i for i in ids if not 0 <= int(i) < sae.cfg.d_sae]
    if bad:
        raise InputError(f"feature ids {bad} are out of range for an SAE with d_sae={sae.cfg.d_sae}")
    if isinstance(positions, int) and positions < 1:
        raise InputError(f"positions must be 'all' or a positive number of final positions, got {positions}")
    if not isinstance(positions, int) and positions != "all":
        raise InputError(f"positions must be 'all' or a positive int, got {positions!r}")
    a = torch.tensor([int(i) for i in ablate], dtype=torch.long)
    c_ids = torch.tensor([int(i) for i in clamp], dtype=torch.long)
    c_vals = torch.tensor([float(v) for v in clamp.values()], dtype=torch.float32)
    first = _FirstTokens() if excludes_first_token(sae) else None
    handle = None
    if first is not None:
        handle = model.blocks[hook_layer(hook)].register_forward_pre_hook(first.pre_hook, with_kwargs=True)
    try:
        with model.hooks(fwd_hooks=[(hook, _edit_hook(sae, a, c_ids, c_vals, positions, first))]):
            yield model
    finally:
        if handle is not None:
            handle.remove()


def feature_acts(
    model: HookedModel,
    sae: SAE,
    hook: str,
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"] | None,
    feature_ids: Sequence[int] | Tensor,
) -> Float[Tensor, "batch pos k"]:
    """SAE activations of `feature_ids` at `hook`, differentiable w.r.t. the model's parameters.

    The model runs only up to the hook's block (``stop_at_layer``); the captured activation is
    encoded by the SAE (its weights are used, not trained: pass only model parameters to your
    optimiser)."""
    layer = check_hook(model, hook)
    ids = torch.as_tensor(feature_ids, dtype=torch.long)
    store: dict[str, Tensor] = {}

    def capture(x: Tensor, hook: Any) -> None:  # noqa: ARG001
        store["x"] = x

    with model.hooks(fwd_hooks=[(hook, capture)]):
        model(tokens, attention_mask=attention_mask, stop_at_layer=layer + 1)
    f = sae.encode(store["x"].to(sae.device).float())
    return f[..., ids.to(f.device)]


# -- behavioural effects ------------------------------------------------------------------------
def _summ(groups: dict[str, GroupResult]) -> dict[str, float]:
    out = {}
    for lab, g in groups.items():
        out[f"{lab}_compliance"] = g.compliance_rate
        out[f"{lab}_refusal"] = g.refusal_rate
    if "harmful" in groups:
        out["asr"] = groups["harmful"].compliance_rate
    return out


def frequency_matched(frequency: Tensor, targets: Sequence[int], n_bins: int = 10, seed: int = 0, exclude: Sequence[int] = ()) -> list[int]:
    """For each target feature, a random other feature from the same activation-frequency bin.

    Bins are quantiles of log10(frequency + 1e-6) over features that fire (never-firing features
    form their own bin). Features in `targets` or `exclude` are never drawn; a bin that runs out
    borrows from the nearest bin."""
    rng = random.Random(seed)
    logf = torch.log10(frequency.double() + 1e-6)
    live = frequency > 0
    edges = torch.quantile(logf[live], torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)) if live.sum() > n_bins else None
    bins = torch.full_like(frequency, -1, dtype=torch.long)
    if edges is not None:
        bins[live] = torch.bucketize(logf[live], edges[1:-1])
    else:
        bins[live] = 0
    banned = set(int(i) for i in targets) | set(int(i) for i in exclude)
    pools: dict[int, list[int]] = {}
    for i, b in enumerate(bins.tolist()):
        if i not in banned:
            pools.setdefault(b, []).append(i)
    out = []
    for t in targets:
        b = int(bins[int(t)])
        order = sorted(pools, key=lambda x: (abs(x - b), x))
        for bb in order:
            if pools[bb]:
                j = rng.randrange(len(pools[bb]))
                out.append(pools[bb].pop(j))
                break
        else:
            raise InputError("not enough features to draw a frequency-matched random set")
    return out


@dataclass
class FeatureEffect:
    """Behaviour with the top-k features ablated vs frequency-matched random features vs nothing."""

    k: int
    features: list[int]
    baseline: dict[str, float]
    ablated: dict[str, float]
    random: list[dict[str, Any]]
    positions: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def random_stats(self, key: str) -> dict[str, float]:
        xs = [r["metrics"][key] for r in self.random]
        if not xs:
            return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
        m = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - m) ** 2 for x in xs) / max(len(xs) - 1, 1))
        return {"mean": m, "std": sd, "min": min(xs), "max": max(xs)}

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"k": self.k}
        for key in self.baseline:
            out[key] = {"baseline": self.baseline[key], "top_k": self.ablated[key], "random": self.random_stats(key)}
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        return d

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, default=str))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeatureEffect:
        d = json.loads(Path(path).read_text())
        d.pop("summary", None)
        return cls(**d)


def _resolve_positions(lm: LoadedModel, positions: Positions | str) -> Positions:
    if positions == "post":
        return post_instruction_len(lm.chat)
    if isinstance(positions, str) and positions != "all":
        raise InputError(f"positions must be 'all', 'post' or a positive int, got {positions!r}")
    return positions  # type: ignore[return-value]


def feature_ablation_effect(
    lm: LoadedModel,
    sae: SAE,
    fset: FeatureSet,
    k: int,
    prompts: PromptSet,
    n_random: int = 5,
    positions: Positions | str = "all",
    max_new_tokens: int = 24,
    seed: int = 0,
    progress: bool = False,
    baseline: dict[str, float] | None = None,
) -> FeatureEffect:
    """Harmful ASR / harmless compliance with the top-k features of `fset` zeroed, vs `n_random`
    draws of k frequency-matched random features, vs no intervention (greedy generation, the
    model's default judge: exact match for organisms). `baseline` reuses the no-intervention
    figures of an earlier call on the same prompts (they do not depend on k)."""
    prompts.require_nonempty()
    pos = _resolve_positions(lm, positions)
    judge = lm.profile.judge(lm)
    model, chat = lm.model, lm.chat
    top = fset.top(k)
    runs: list[tuple[str, list[int] | None]] = [] if baseline is not None else [("baseline", None)]
    runs.append(("top_k", top))
    for r in range(n_random):
        runs.append((f"random_{r}", frequency_matched(fset.frequency, top, seed=seed + r)))
    results: dict[str, dict[str, float]] = {} if baseline is None else {"baseline": dict(baseline)}
    for name, ids in tqdm(runs, desc=f"ablating k={k}", disable=not progress, leave=False):
        if ids is None:
            g = evaluate_behaviour(model, chat, prompts, judge, max_new_tokens=max_new_tokens)
        else:
            with splice_sae(model, sae, fset.hook, ablate=ids, positions=pos):
                g = evaluate_behaviour(model, chat, prompts, judge, max_new_tokens=max_new_tokens)
        results[name] = _summ(g)
    rand = [{"features": ids, "metrics": results[name]} for name, ids in runs if name.startswith("random_")]
    prov = {
        "model": lm.name, "hook": fset.hook, "sae_path": fset.sae_path, "method": fset.method, "judge": judge.name,
        "prompts": prompts.provenance(), "seed": seed, "n_random": n_random, "max_new_tokens": max_new_tokens,
        "random_control": "frequency-matched (10 log-frequency quantile bins)",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    return FeatureEffect(k, top, results["baseline"], results["top_k"], rand, str(pos), prov)


def clamp_effect(
    lm: LoadedModel,
    sae: SAE,
    fset: FeatureSet,
    k: int,
    prompts: PromptSet,
    coefficient: float = 1.0,
    positions: Positions | str = "post",
    max_new_tokens: int = 24,
) -> dict[str, Any]:
    """Clamp the top-k features at ``coefficient x`` their mean harmful post-instruction activation
    (``fset.stats['mean_post_harmful']``) on `prompts` (normally harmless) and report refusal
    and compliance rates against no intervention."""
    if "mean_post_harmful" not in fset.stats:
        raise InputError("this FeatureSet has no mean_post_harmful statistics; rank it on harmful prompts")
    pos = _resolve_positions(lm, positions)
    judge = lm.profile.judge(lm)
    top = fset.top(k)
    values = {i: float(coefficient * fset.stats["mean_post_harmful"][i]) for i in top}
    base = _summ(evaluate_behaviour(lm.model, lm.chat, prompts, judge, max_new_tokens=max_new_tokens))
    with splice_sae(lm.model, sae, fset.hook, clamp=values, positions=pos):
        clamped = _summ(evaluate_behaviour(lm.model, lm.chat, prompts, judge, max_new_tokens=max_new_tokens))
    return {"k": k, "coefficient": coefficient, "positions": str(pos), "features": top, "clamp_values": values,
            "baseline": base, "clamped": clamped, "prompts": prompts.provenance()}


@torch.no_grad()
def single_feature_refusal_effects(
    lm: LoadedModel,
    sae: SAE,
    hook: str,
    feature_ids: Sequence[int],
    prompts: PromptSet,
    positions: Positions | str = "all",
) -> dict[int, float]:
    """Change of the mean logit refusal score on `prompts` (normally harmful) when each feature
    alone is zeroed (negative = the feature supports refusal)."""
    from safecircuits.evaluation.judges import refusal_score

    pos = _resolve_positions(lm, positions)
    ids = refusal_ids_for(lm)
    base = float(refusal_score(lm.model, lm.chat, prompts.prompts, ids).mean())
    out = {}
    for f in feature_ids:
        with splice_sae(lm.model, sae, hook, ablate=[int(f)], positions=pos):
            out[int(f)] = float(refusal_score(lm.model, lm.chat, prompts.prompts, ids).mean()) - base
    return out


__all__ = [
    "FeatureEffect", "Label", "clamp_effect", "feature_ablation_effect", "feature_acts", "frequency_matched",
    "single_feature_refusal_effects", "splice_sae",
]
