"""The refusal direction (Arditi et al. 2024, arXiv 2406.11717): find it, select it, intervene with it.

* **Candidates.** For every residual-stream layer ``l`` (``blocks.l.hook_resid_pre`` for
  ``l < n_layers`` and the final ``blocks.{n_layers-1}.hook_resid_post`` as ``l = n_layers``) and
  every post-instruction position ``i`` (the chat-template tokens after the user's text, counted
  from the end: ``-1`` is the last prompt token; extended to the last 3 positions when the template
  has fewer, see :func:`default_positions`), ``r[i, l] = mean(x | harmful) - mean(x | harmless)``,
  accumulated in float64. Batches are left-padded, so position ``-k`` is the same template token
  in every prompt.
* **Selection.** For each candidate, on validation prompts: the mean logit refusal score
  (``log p(R) - log(1 - p(R))`` at the last prompt position) of harmful prompts under directional
  ablation (lower = refusal bypassed), the KL divergence of the harmless prompts' next-token
  distribution under ablation (must be <= ``kl_threshold``), and (recorded, optionally a filter)
  the refusal score of harmless prompts under activation addition. The layer filter
  (:func:`layer_cutoff`) discards candidates at layers ``>= int(n_layers * 0.8)`` (Arditi) in models
  of at least ``prune_min_layers`` (8) layers, and only the final residual stream in shallower ones.
  The candidate with the lowest ablated refusal score wins.
* **Validation.** The winner is *validated* when directional ablation raises the attack success
  rate (greedy generation, the profile's judge) on the harmful validation prompts by at least
  ``min_asr_rise`` (default 0.5, i.e. 50 points). Otherwise the result says ``validated=False``
  with the ``reason``; it is saved and loaded with it.
* **Interventions.** :func:`directional_ablation` (``x <- x - r_hat r_hat^T x`` at every layer's
  resid_pre, resid_mid and resid_post, every position), :func:`activation_addition`
  (``x <- x + coeff * r`` at the chosen layer, every position) and :func:`orthogonalize_weights`
  (every matrix writing to the residual stream: ``W <- W - r_hat r_hat^T W``), which returns a new
  model whose outputs equal those of directional ablation.
"""

from __future__ import annotations

import copy
import datetime as _dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from safecircuits.data.chat import ChatFormat, encode_batch
from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError
from safecircuits.evaluation.judges import LogitJudge, refusal_score, refusal_token_ids
from safecircuits.evaluation.metrics import kl_divergence, next_token_logprobs
from safecircuits.hooks import common_suffix_len
from safecircuits.models.loaded import LoadedModel
from safecircuits.models.weights import as_matrix, from_matrix
from safecircuits.subspaces._io import load_bundle, promptset_provenance, save_bundle
from safecircuits.types import HookedModel

FORMAT = "safecircuits-refusal-direction/1"

# Parameters that write into the residual stream, by their last name part, and the side of the
# tensor that lives in d_model (TransformerLens layouts).
RESID_WRITERS = ("W_E", "W_pos", "W_O", "b_O", "W_out", "b_out")


def resid_hook_name(model: HookedModel, layer: int) -> str:
    """Residual stream *before* layer `layer`; ``layer == n_layers`` is the final residual stream."""
    n = model.cfg.n_layers
    if not 0 <= layer <= n:
        raise InputError(f"layer {layer} is out of range: residual-stream layers are 0..{n} (n_layers = {n} is the final stream)")
    return f"blocks.{layer}.hook_resid_pre" if layer < n else f"blocks.{n - 1}.hook_resid_post"


def _prompts(x: PromptSet | Sequence[str], what: str) -> list[str]:
    prompts = x.prompts if isinstance(x, PromptSet) else list(x)
    if not prompts:
        raise InputError(f"{what}: no prompts given; pass a non-empty PromptSet or list of prompts")
    return prompts


def _unit(direction: Tensor) -> Tensor:
    d = direction.detach().flatten()
    n = d.double().norm()
    if not torch.isfinite(n) or n == 0:
        raise InputError("the direction is zero or not finite: it cannot be normalised (were the harmful and harmless prompts the same?)")
    return (d.double() / n).to(direction.dtype)


def post_instruction_len(chat: ChatFormat, prompts: Sequence[str] = ()) -> int:
    """Number of post-instruction template tokens: :func:`common_suffix_len` of the chat, capped by
    the longest token suffix that every one of `prompts` shares.

    The cap matters for word-level tokenizers: ``common_suffix_len`` probes with words outside the
    organism vocabulary, which all map to ``<unk>`` and so look like a shared suffix.
    """
    k = common_suffix_len(chat)
    ids = [chat.prompt_ids(p) for p in prompts]
    if ids:
        n = 0
        shortest = min(len(x) for x in ids)
        while n < min(k, shortest) and len({x[-1 - n] for x in ids}) == 1:
            n += 1
        k = max(n, 1)
    return k


MIN_POSITIONS = 3  # candidate positions when the chat template has fewer post-instruction tokens


def default_positions(chat: ChatFormat, prompts: Sequence[str] = (), min_positions: int = 1) -> list[int]:
    """The post-instruction positions of `chat`, as negative offsets (``[-k, ..., -1]``), extended to
    the last `min_positions` prompt positions when the template has fewer post-instruction tokens.

    Arditi et al.'s chat templates have four or more tokens after the user's text (SmolLM2: six);
    the organisms' has one (``[assistant]``), which leaves one candidate position. There the user's
    final tokens (the closing ``?`` or ``.``, the request's object) are the nearest stand-ins for an
    end-of-turn marker, so :class:`RefusalConfig` scores the last ``MIN_POSITIONS`` (3) positions.
    Never reaches further back than the shortest prompt.
    """
    k = post_instruction_len(chat, prompts)
    if min_positions > k:
        ids = [chat.prompt_ids(p) for p in prompts]
        shortest = min((len(x) for x in ids), default=min_positions)
        k = max(k, min(min_positions, shortest - 1))
    return list(range(-k, 0))


@torch.no_grad()
def mean_activations(
    model: HookedModel,
    chat: ChatFormat,
    prompts: PromptSet | Sequence[str],
    positions: Sequence[int],
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "activations",
) -> Float[Tensor, "n_pos n_resid d_model"]:
    """Float64 mean residual stream at every layer (``n_resid = n_layers + 1``) and position offset."""
    texts = _prompts(prompts, desc)
    L = model.cfg.n_layers
    names = [resid_hook_name(model, layer) for layer in range(L + 1)]
    wanted = set(names)
    pos = torch.tensor(list(positions), dtype=torch.long)
    total = torch.zeros(len(pos), L + 1, model.cfg.d_model, dtype=torch.float64)
    batches = range(0, len(texts), batch_size)
    for i in tqdm(batches, desc=desc, disable=not progress, leave=False):
        b = encode_batch(chat, texts[i : i + batch_size], padding_side="left", max_len=model.cfg.n_ctx, source=desc)
        shortest = min(b.prompt_lengths)
        if -int(pos.min()) > shortest:
            raise InputError(f"position {int(pos.min())} reaches before the start of a {shortest}-token prompt")
        dev = model.cfg.device
        _, cache = model.run_with_cache(b.tokens.to(dev), attention_mask=b.attention_mask.to(dev), names_filter=lambda n: n in wanted)
        for j, n in enumerate(names):
            total[:, j] += cache[n][:, pos.to(dev)].double().sum(0).cpu()
        del cache
    return total / len(texts)


def compute_candidate_directions(
    model: HookedModel,
    chat: ChatFormat,
    harmful: PromptSet | Sequence[str],
    harmless: PromptSet | Sequence[str],
    positions: Sequence[int] | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> Float[Tensor, "n_pos n_resid d_model"]:
    """Difference-of-means candidates ``r[i, l]`` (float64) for every post-instruction position
    offset in `positions` (default: :func:`default_positions`) and residual layer ``0..n_layers``."""
    if positions is None:
        positions = default_positions(chat, _prompts(harmful, "harmful prompts") + _prompts(harmless, "harmless prompts"))
    positions = list(positions)
    if not positions or any(p >= 0 for p in positions):
        raise InputError(f"positions must be non-empty negative offsets from the prompt end (e.g. [-1]), got {positions}")
    mu_h = mean_activations(model, chat, harmful, positions, batch_size, progress, "harmful activations")
    mu_b = mean_activations(model, chat, harmless, positions, batch_size, progress, "harmless activations")
    return mu_h - mu_b


# -- interventions ----------------------------------------------------------------------------------
def _ablation_hook(r_hat: Tensor):
    cache: dict[tuple, Tensor] = {}

    def hook(act: Tensor, hook) -> Tensor:  # noqa: ARG001
        key = (act.dtype, act.device)
        r = cache.get(key)
        if r is None:
            r = cache[key] = r_hat.to(device=act.device, dtype=act.dtype)
        return act - (act @ r)[..., None] * r

    return hook


def ablation_hook_names(model: HookedModel) -> list[str]:
    names = []
    for layer in range(model.cfg.n_layers):
        names += [f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.hook_resid_mid", f"blocks.{layer}.hook_resid_post"]
    return names


@contextmanager
def directional_ablation(model: HookedModel, direction: Float[Tensor, " d_model"]) -> Iterator[HookedModel]:
    """Context manager: remove the component along ``r_hat`` from the residual stream at every
    layer's resid_pre, resid_mid and resid_post, at every position (generation included). The hooks
    are removed on exit, also when the body raises."""
    _check_dim(model, direction)
    hook = _ablation_hook(_unit(direction.double()))
    with model.hooks(fwd_hooks=[(n, hook) for n in ablation_hook_names(model)]):
        yield model


@contextmanager
def activation_addition(
    model: HookedModel,
    direction: Float[Tensor, " d_model"],
    layer: int,
    coeff: float = 1.0,
    positions: str = "all",
) -> Iterator[HookedModel]:
    """Context manager: ``x <- x + coeff * r`` in the residual stream before `layer` (see
    :func:`resid_hook_name`). `direction` is used as given (not normalised).

    ``positions="all"`` (Arditi et al.) adds at every position, generated tokens included;
    ``positions="prompt"`` adds only in forwards of more than one token, i.e. on the prompt when
    generating with a key-value cache, and lets the model write its response unsteered.
    """
    _check_dim(model, direction)
    if positions not in ("all", "prompt"):
        raise InputError(f"positions must be 'all' or 'prompt', got {positions!r}")
    r = (coeff * direction.detach().double()).to(device=model.cfg.device, dtype=model.cfg.dtype)
    prompt_only = positions == "prompt"

    def hook(act: Tensor, hook) -> Tensor:  # noqa: ARG001
        if prompt_only and act.shape[1] == 1:
            return act
        return act + r.to(act.dtype)

    with model.hooks(fwd_hooks=[(resid_hook_name(model, layer), hook)]):
        yield model


@torch.no_grad()
def orthogonalize_weights(model: HookedModel, direction: Float[Tensor, " d_model"]) -> HookedModel:
    """A new model (deep copy; `model` is untouched) whose every residual-stream writer
    (W_E, W_pos, W_O, b_O, W_out, b_out) is orthogonalised: ``W <- W - r_hat r_hat^T W`` on the
    d_model side, so nothing is ever written along ``r_hat`` (Arditi et al.'s weight edit)."""
    _check_dim(model, direction)
    new = copy.deepcopy(model)
    r = _unit(direction.double()).to(model.cfg.device)
    for name, p in new.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf not in RESID_WRITERS:
            continue
        w = p.data.double()
        if leaf in ("W_O", "W_out"):
            m = as_matrix(name, w)  # [d_model, d_in]
            m = m - torch.outer(r, r @ m)
            w = from_matrix(name, m, w.shape)
        else:  # W_E [d_vocab, d_model], W_pos [n_ctx, d_model], biases [d_model]: d_model is last
            w = w - (w @ r)[..., None] * r
        p.data.copy_(w.to(p.dtype))
    return new


def _check_dim(model: HookedModel, direction: Tensor) -> None:
    if direction.ndim != 1 or direction.shape[0] != model.cfg.d_model:
        raise InputError(
            f"direction has shape {tuple(direction.shape)} but the model's d_model is {model.cfg.d_model}; "
            "use a direction computed on this model"
        )


# -- selection --------------------------------------------------------------------------------------
PRUNE_MIN_LAYERS = 8  # below this many layers the layer filter prunes only the final residual stream


def layer_cutoff(n_layers: int, prune_layer_fraction: float = 0.2, prune_min_layers: int = PRUNE_MIN_LAYERS) -> int:
    """The first residual layer the layer filter discards: candidates at ``layer >= layer_cutoff(...)`` are pruned.

    Arditi et al. discard the last 20% of layers, ``int(n_layers * (1 - prune_layer_fraction))``,
    because directions read there act mostly through the unembedding. In a shallow model 20% of the
    layers is a whole block, often the one where refusal is decided (a 3-layer organism would keep
    only layers 0 and 1, and on some seeds neither separates the classes), so a model with fewer than
    `prune_min_layers` layers prunes only the final residual stream (``layer == n_layers``), which
    every rule prunes: it is the unembedding's input.
    """
    if not 0 <= prune_layer_fraction < 1:
        raise InputError(f"prune_layer_fraction must be in [0, 1), got {prune_layer_fraction}")
    if n_layers < prune_min_layers:
        return n_layers
    return min(int(n_layers * (1.0 - prune_layer_fraction)), n_layers)


def default_refusal_ids(model: HookedModel, chat: ChatFormat) -> list[int]:
    """The set R of refusal first tokens when none is given: the logit judge's default starts.
    Pass ``refusal_ids=refusal_ids_for(lm)`` (the model profile's) to be exact."""
    return LogitJudge(model, chat).refusal_ids


@torch.no_grad()
def score_candidates(
    model: HookedModel,
    chat: ChatFormat,
    candidates: Float[Tensor, "n_pos n_resid d_model"],
    positions: Sequence[int],
    harmful_val: PromptSet | Sequence[str],
    harmless_val: PromptSet | Sequence[str],
    refusal_ids: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    kl_threshold: float = 0.1,
    prune_layer_fraction: float = 0.2,
    induce_filter: bool = False,
    batch_size: int = 32,
    progress: bool = False,
    prune_min_layers: int = PRUNE_MIN_LAYERS,
) -> list[dict[str, Any]]:
    """Scores of every candidate (one dict each: layer, pos, refusal_score, kl, steer_score,
    norm, kept, reason). ``layers`` restricts which residual layers are scored (default all).
    The layer filter is :func:`layer_cutoff` (`prune_layer_fraction`, `prune_min_layers`)."""
    max_layer = layer_cutoff(model.cfg.n_layers, prune_layer_fraction, prune_min_layers)
    n_res = candidates.shape[1]
    if candidates.shape[0] != len(positions):
        raise InputError(f"{candidates.shape[0]} candidate positions but {len(positions)} position offsets")
    layers = list(range(n_res)) if layers is None else list(layers)
    bad = [layer for layer in layers if not 0 <= layer < n_res]
    if bad:
        raise InputError(f"layers {bad} are out of range 0..{n_res - 1}")
    harmful = _prompts(harmful_val, "harmful validation prompts")
    harmless = _prompts(harmless_val, "harmless validation prompts")
    ids = default_refusal_ids(model, chat) if refusal_ids is None else list(refusal_ids)
    base_lp = next_token_logprobs(model, chat, harmless, batch_size)
    out: list[dict[str, Any]] = []
    todo = [(i, p, layer) for i, p in enumerate(positions) for layer in layers]
    for i, p, layer in tqdm(todo, desc="scoring candidates", disable=not progress, leave=False):
        r = candidates[i, layer].float()
        norm = float(candidates[i, layer].norm())
        rec: dict[str, Any] = {"layer": layer, "pos": int(p), "norm": norm}
        if norm == 0 or not torch.isfinite(candidates[i, layer]).all():
            out.append({**rec, "refusal_score": float("nan"), "kl": float("nan"), "steer_score": float("nan"),
                        "kept": False, "reason": "zero or non-finite direction"})
            continue
        with directional_ablation(model, r):
            s = float(refusal_score(model, chat, harmful, ids, batch_size).mean())
            kl = kl_divergence(base_lp, next_token_logprobs(model, chat, harmless, batch_size))
        with activation_addition(model, r, layer):
            steer = float(refusal_score(model, chat, harmless, ids, batch_size).mean())
        reason = None
        if layer >= max_layer:
            reason = (f"layer >= {max_layer} (last {prune_layer_fraction:.0%} of layers)" if max_layer < model.cfg.n_layers
                      else f"layer {max_layer} is the final residual stream")
        elif not kl <= kl_threshold:
            reason = f"KL {kl:.3g} > {kl_threshold}"
        elif induce_filter and not steer > 0:
            reason = f"activation addition does not induce refusal (score {steer:.3g} <= 0)"
        out.append({**rec, "refusal_score": s, "kl": kl, "steer_score": steer, "kept": reason is None, "reason": reason})
    return out


@dataclass
class RefusalDirection:
    """The selected refusal direction and how it was chosen.

    ``direction`` is the unit vector r_hat; ``norm`` the raw difference-of-means norm, so
    ``raw = norm * direction`` is Arditi's r. ``layer`` is the residual layer (see
    :func:`resid_hook_name`) and ``pos`` the post-instruction position offset (-1 = last prompt
    token). ``candidates`` holds the scores of every candidate; ``candidate_directions`` (optional)
    the raw candidates ``[n_pos, n_layers + 1, d_model]`` for ``positions``.

    ``validated`` says whether selection succeeded (see :func:`find_refusal_direction`: ablating
    the direction must raise the harmful validation ASR by ``min_asr_rise``); ``reason`` says why
    not, and ``validation`` holds the numbers (None / empty for a direction made by hand, saved
    before validation existed, or found with ``validate=False``).
    """

    direction: Float[Tensor, " d_model"]
    norm: float
    layer: int
    pos: int
    candidates: list[dict[str, Any]] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    candidate_directions: Float[Tensor, "n_pos n_resid d_model"] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    validated: bool | None = None
    reason: str | None = None
    validation: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.direction = _unit(self.direction.detach().double().cpu()).float()
        if self.candidate_directions is not None:
            self.candidate_directions = self.candidate_directions.detach().cpu()

    @property
    def d_model(self) -> int:
        return self.direction.shape[0]

    @property
    def raw(self) -> Float[Tensor, " d_model"]:
        return self.direction * self.norm

    def __repr__(self) -> str:
        v = "" if self.validated is None else (", validated" if self.validated else ", NOT VALIDATED")
        return (f"RefusalDirection(layer={self.layer}, pos={self.pos}, norm={self.norm:.3g}, d_model={self.d_model}, "
                f"model={self.provenance.get('model')}{v})")

    # interventions
    def ablate(self, model: HookedModel):
        """:func:`directional_ablation` with this direction (context manager)."""
        return directional_ablation(model, self.direction)

    def add(self, model: HookedModel, coeff: float = 1.0, layer: int | None = None, positions: str = "all"):
        """:func:`activation_addition` of ``coeff * raw`` at this direction's layer (context manager)."""
        return activation_addition(model, self.raw, self.layer if layer is None else layer, coeff, positions)

    def orthogonalize(self, model: HookedModel) -> HookedModel:
        return orthogonalize_weights(model, self.direction)

    # persistence
    def save(self, path: str | Path) -> Path:
        """Save as ``.pt`` or ``.safetensors`` (tensors) with JSON metadata; loads without the model."""
        tensors = {"direction": self.direction}
        if self.candidate_directions is not None:
            tensors["candidate_directions"] = self.candidate_directions
        meta = {"norm": self.norm, "layer": self.layer, "pos": self.pos, "candidates": self.candidates,
                "positions": self.positions, "provenance": self.provenance, "validated": self.validated,
                "reason": self.reason, "validation": self.validation}
        return save_bundle(path, FORMAT, tensors, meta)

    @classmethod
    def load(cls, path: str | Path) -> RefusalDirection:
        t, m = load_bundle(path, FORMAT, "refusal direction")
        return cls(t["direction"], m["norm"], m["layer"], m["pos"], m["candidates"], m["positions"],
                   t.get("candidate_directions"), m["provenance"], m.get("validated"), m.get("reason"), m.get("validation") or {})


@dataclass
class RefusalConfig:
    """How :func:`find_refusal_direction` builds and selects candidates (validated)."""

    positions: tuple[int, ...] | None = None  # offsets from the prompt end; None = default_positions(..., min_positions)
    min_positions: int = MIN_POSITIONS  # with positions=None: score at least this many final positions
    layers: tuple[int, ...] | None = None  # residual layers to score; None = all
    kl_threshold: float = 0.1  # discard candidates whose ablation moves harmless next-token KL above this
    prune_layer_fraction: float = 0.2  # discard candidates in this last share of layers (Arditi) ...
    prune_min_layers: int = PRUNE_MIN_LAYERS  # ... in models of at least this many layers; shallower: only the final stream
    induce_filter: bool = False  # also require that adding the direction induces refusal
    min_asr_rise: float = 0.5  # validated when ablation raises the harmful val ASR by at least this (0.5 = 50 points)
    validate: bool = True  # run the validation (two greedy generations over the harmful val prompts)
    max_new_tokens: int = 32  # generation length of the validation
    n_prompts: int | Literal["auto"] | None = "auto"  # prompts per class and split from the profile; "auto" = its size, None = all
    batch_size: int = 32
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.prune_layer_fraction < 1:
            raise InputError(f"prune_layer_fraction must be in [0, 1), got {self.prune_layer_fraction}")
        if not 0 < self.min_asr_rise <= 1:
            raise InputError(f"min_asr_rise must be in (0, 1], got {self.min_asr_rise}")
        if self.min_positions < 1:
            raise InputError(f"min_positions must be >= 1, got {self.min_positions}")
        if self.prune_min_layers < 1:
            raise InputError(f"prune_min_layers must be >= 1, got {self.prune_min_layers}")
        if self.kl_threshold <= 0:
            raise InputError(f"kl_threshold must be > 0, got {self.kl_threshold}")
        if self.n_prompts != "auto" and self.n_prompts is not None and (not isinstance(self.n_prompts, int) or self.n_prompts < 4):
            raise InputError(f"n_prompts must be at least 4 per class, 'auto' or None (all), got {self.n_prompts!r}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        self.positions = None if self.positions is None else tuple(int(p) for p in self.positions)
        self.layers = None if self.layers is None else tuple(int(x) for x in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k != "progress"}


def find_refusal_direction(
    lm: LoadedModel,
    harmful: PromptSet | Sequence[str] | None = None,
    harmless: PromptSet | Sequence[str] | None = None,
    harmful_val: PromptSet | Sequence[str] | None = None,
    harmless_val: PromptSet | Sequence[str] | None = None,
    config: RefusalConfig | None = None,
) -> RefusalDirection:
    """Candidates on (harmful, harmless), selection on the validation sets -> :class:`RefusalDirection`.

    Prompts not given come from the model's profile: the train split for the candidates, the val
    split for the selection (``config.n_prompts`` of each). Refusal tokens are the profile's.

    **Validation** (``config.validate``). The winner is ``validated`` when directional ablation raises
    the attack success rate on the harmful validation prompts (greedy generation of
    ``config.max_new_tokens`` tokens, the profile's judge) by at least ``config.min_asr_rise``
    (default 0.5: 50 points). Otherwise it is returned with ``validated=False`` and a ``reason``;
    so is the best-scoring candidate when the filters (layer, KL) discard every candidate. Only
    candidate directions that are all zero (harmful and harmless prompts alike) raise an InputError.
    ``validation`` records the rule, both ASRs and the mean refusal scores with and without ablation.
    """
    cfg = config or RefusalConfig()
    model, chat, prof = lm.model, lm.chat, lm.profile
    n = prof.sizes["refusal"] if cfg.n_prompts == "auto" else cfg.n_prompts
    harmful = harmful if harmful is not None else prof.prompts("train", "harmful", n=n, seed=cfg.seed)
    harmless = harmless if harmless is not None else prof.prompts("train", "harmless", n=n, seed=cfg.seed)
    harmful_val = harmful_val if harmful_val is not None else prof.prompts("val", "harmful", n=n, seed=cfg.seed)
    harmless_val = harmless_val if harmless_val is not None else prof.prompts("val", "harmless", n=n, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.positions is None:
        positions = default_positions(chat, _prompts(harmful, "harmful prompts") + _prompts(harmless, "harmless prompts"),
                                      cfg.min_positions)
    else:
        positions = list(cfg.positions)
    cands = compute_candidate_directions(model, chat, harmful, harmless, positions, cfg.batch_size, cfg.progress)
    ids = refusal_token_ids(chat, prof.refusal_starts)
    scores = score_candidates(model, chat, cands, positions, harmful_val, harmless_val, ids, cfg.layers, cfg.kl_threshold,
                              cfg.prune_layer_fraction, cfg.induce_filter, cfg.batch_size, cfg.progress, cfg.prune_min_layers)
    finite = [s for s in scores if s["norm"] > 0 and s["refusal_score"] == s["refusal_score"]]
    if not finite:
        raise InputError("every refusal-direction candidate is zero or not finite: the harmful and harmless prompts give the same "
                         "activations (are they the same prompts?); pass prompts that differ in harmfulness")
    kept = [s for s in scores if s["kept"]]
    best = min(kept or finite, key=lambda s: s["refusal_score"])
    i = positions.index(best["pos"])
    validation: dict[str, Any] = {
        "rule": f"directional ablation raises the harmful val ASR by >= {cfg.min_asr_rise:g}",
        "min_asr_rise": cfg.min_asr_rise,
        "n_kept": len(kept),
        "n_candidates": len(scores),
        "layer_cutoff": layer_cutoff(model.cfg.n_layers, cfg.prune_layer_fraction, cfg.prune_min_layers),
    }
    reason = None
    if not kept:
        reason = (f"every candidate was filtered out ({'; '.join(sorted({s['reason'] for s in scores}))}); the best unfiltered "
                  "one is returned unvalidated. Relax kl_threshold, lower prune_layer_fraction or pass other layers")
    if cfg.validate:
        validation.update(_validate(lm, cands[i, best["layer"]].float(), _prompts(harmful_val, "harmful validation prompts"),
                                    ids, cfg))
        if reason is None:
            rise = validation["val_asr_ablated"] - validation["val_asr"]
            if validation["val_refusal_rate"] < cfg.min_asr_rise:
                reason = (f"the model refuses only {100 * validation['val_refusal_rate']:.1f}% of the harmful validation prompts: "
                          f"ablation cannot raise the ASR by {100 * cfg.min_asr_rise:g} points (there is little refusal to remove)")
            elif rise < cfg.min_asr_rise:
                dropped = sorted({s["reason"] for s in scores if not s["kept"]})
                reason = (f"no candidate bypasses refusal: ablating the best (layer {best['layer']}, position {best['pos']}) moves "
                          f"the harmful val ASR {100 * validation['val_asr']:.1f}% -> {100 * validation['val_asr_ablated']:.1f}% "
                          f"(needs +{100 * cfg.min_asr_rise:g} points; mean refusal score {validation['val_refusal_score']:.3g} -> "
                          f"{validation['val_refusal_score_ablated']:.3g}). Refusal may not be one direction at these positions "
                          f"and layers in this model (discarded: {'; '.join(dropped) or 'none'})")
    i = positions.index(best["pos"])
    r = cands[i, best["layer"]]
    prov = {
        "method": "difference of means, Arditi et al. 2406.11717",
        "model": lm.name,
        "d_model": model.cfg.d_model,
        "n_layers": model.cfg.n_layers,
        "hook": resid_hook_name(model, best["layer"]),
        "harmful": promptset_provenance(harmful),
        "harmless": promptset_provenance(harmless),
        "harmful_val": promptset_provenance(harmful_val),
        "harmless_val": promptset_provenance(harmless_val),
        "refusal_ids": ids,
        "refusal_tokens": [chat.tokenizer.decode([t]) for t in ids],
        "settings": {**cfg.to_dict(), "positions": positions},
        "profile": prof.to_dict(),
        "seed": cfg.seed,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    validated = (reason is None) if cfg.validate else (False if reason else None)
    return RefusalDirection(r.float(), float(r.norm()), best["layer"], best["pos"], scores, positions, cands.float(), prov,
                            validated=validated, reason=reason, validation=validation)


@torch.no_grad()
def _validate(lm: LoadedModel, direction: Tensor, harmful_val: list[str], ids: Sequence[int], cfg: RefusalConfig) -> dict[str, Any]:
    """Greedy ASR and refusal rate on the harmful val prompts with and without directional ablation,
    and their mean logit refusal scores."""
    from safecircuits.evaluation.generate import generate

    model, chat = lm.model, lm.chat
    judge = lm.profile.judge(lm)

    def rates() -> tuple[float, float, float]:
        out = generate(model, chat, harmful_val, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
        vs = judge.verdicts(harmful_val, out)
        score = float(refusal_score(model, chat, harmful_val, ids, cfg.batch_size).mean())
        return sum(v.complied for v in vs) / len(vs), sum(v.refused for v in vs) / len(vs), score

    asr, ref, s0 = rates()
    with directional_ablation(model, direction):
        asr_a, ref_a, s1 = rates()
    return {"judge": judge.name, "n_harmful_val": len(harmful_val), "max_new_tokens": cfg.max_new_tokens,
            "val_asr": asr, "val_refusal_rate": ref, "val_asr_ablated": asr_a, "val_refusal_rate_ablated": ref_a,
            "val_refusal_score": s0, "val_refusal_score_ablated": s1}
