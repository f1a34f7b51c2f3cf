"""The activation safety subspace: rank-k PCA of harmful-minus-harmless activation differences.

At one hook (default the residual stream before a layer) and one post-instruction position, with
``h_i`` the harmful and ``b_j`` the harmless activations:

* ``pairing="mean"`` (default): the differences are ``h_i - mean(b)`` for every harmful prompt and
  ``mean(h) - b_j`` for every harmless prompt (each example against the *other* class's mean, so
  the sets need not be paired or of equal size);
* ``pairing="paired"``: ``h_i - b_i`` for prompts given in matched pairs (same length required).

The basis is the top-k right singular vectors of the **uncentred** difference matrix ``D [n, d]``
(float64): uncentred so that the first component captures the mean difference (the
difference-of-means refusal direction) and the others the main ways the difference varies.
``explained_variance[c] = S_c^2 / sum(S^2)`` is the share of the differences' second moment
along component c.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from safecircuits.data.chat import ChatFormat, encode_batch
from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError
from safecircuits.hooks import hook_layer
from safecircuits.subspaces._io import load_bundle, promptset_provenance, save_bundle
from safecircuits.subspaces.refusal import _prompts, resid_hook_name
from safecircuits.types import HookedModel

FORMAT = "safecircuits-activation-subspace/1"


@torch.no_grad()
def collect_activations(
    model: HookedModel,
    chat: ChatFormat,
    prompts: PromptSet | Sequence[str],
    hook: str,
    pos: int = -1,
    batch_size: int = 32,
    progress: bool = False,
) -> Float[Tensor, "n d"]:
    """Float64 activations at `hook`, position offset `pos` (left-padded, so -1 = last prompt token)."""
    return collect_activations_at(model, chat, prompts, [hook], pos, batch_size, progress)[hook]


@torch.no_grad()
def collect_activations_at(
    model: HookedModel,
    chat: ChatFormat,
    prompts: PromptSet | Sequence[str],
    hooks: Sequence[str],
    pos: int = -1,
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, Float[Tensor, "n d"]]:
    """:func:`collect_activations` at several hooks from one forward pass per batch."""
    hooks = list(dict.fromkeys(hooks))
    if not hooks:
        raise InputError("give at least one hook name")
    texts = _prompts(prompts, f"activations at {hooks[0]}")
    if pos >= 0:
        raise InputError(f"pos must be a negative offset from the prompt end (e.g. -1), got {pos}")
    bad = [h for h in hooks if h not in model.hook_dict]
    if bad:
        raise InputError(f"{bad[0]!r} is not a hook of this model; e.g. use 'blocks.1.hook_resid_pre'")
    # Run only the blocks up to the last hook's (no unembedding): the same activations at a fraction of the cost.
    layers = [hook_layer(h) for h in hooks]
    known = [layer for layer in layers if layer is not None]
    last = max(known) if len(known) == len(layers) else None
    stop = last + 1 if last is not None and last + 1 < model.cfg.n_layers else None
    wanted = set(hooks)
    out: dict[str, list[Tensor]] = {h: [] for h in hooks}
    for i in tqdm(range(0, len(texts), batch_size), desc="activations", disable=not progress, leave=False):
        b = encode_batch(chat, texts[i : i + batch_size], padding_side="left", max_len=model.cfg.n_ctx, source=hooks[0])
        dev = model.cfg.device
        _, cache = model.run_with_cache(b.tokens.to(dev), attention_mask=b.attention_mask.to(dev), names_filter=lambda n: n in wanted,
                                        stop_at_layer=stop)
        for h in hooks:
            out[h].append(cache[h][:, pos].double().cpu().flatten(1))
    return {h: torch.cat(v) for h, v in out.items()}


@dataclass
class ActivationSubspace:
    """Orthonormal ``basis [d, k]`` of harmful-minus-harmless activation differences, the share
    of the differences' second moment per component, and provenance."""

    basis: Float[Tensor, "d k"]
    explained_variance: Float[Tensor, " k"]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.basis = self.basis.detach().float().cpu()
        self.explained_variance = self.explained_variance.detach().float().cpu()
        if self.basis.ndim != 2 or self.explained_variance.shape != (self.basis.shape[1],):
            raise InputError(f"basis {tuple(self.basis.shape)} must be [d, k] with k = len(explained_variance) {tuple(self.explained_variance.shape)}")

    @property
    def k(self) -> int:
        return self.basis.shape[1]

    def project(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        """The part of activations `x` inside the subspace."""
        b = self.basis.to(x.device, x.dtype)
        return (x @ b) @ b.T

    def save(self, path: str | Path) -> Path:
        return save_bundle(path, FORMAT, {"basis": self.basis, "explained_variance": self.explained_variance},
                           {"provenance": self.provenance})

    @classmethod
    def load(cls, path: str | Path) -> ActivationSubspace:
        t, m = load_bundle(path, FORMAT, "activation subspace")
        return cls(t["basis"], t["explained_variance"], m["provenance"])

    def __repr__(self) -> str:
        ev = ", ".join(f"{x:.3f}" for x in self.explained_variance[:4].tolist())
        return f"ActivationSubspace(d={self.basis.shape[0]}, k={self.k}, explained=[{ev}{', ...' if self.k > 4 else ''}], hook={self.provenance.get('hook')})"


def compute_activation_subspace(
    model: HookedModel,
    chat: ChatFormat,
    harmful: PromptSet | Sequence[str],
    harmless: PromptSet | Sequence[str],
    k: int = 4,
    layer: int | None = None,
    hook: str | None = None,
    pos: int = -1,
    pairing: str = "mean",
    batch_size: int = 32,
    model_name: str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ActivationSubspace:
    """Rank-k PCA of activation differences (see the module docstring). Give `layer` (residual
    stream before it; ``n_layers`` = final) or an explicit `hook` name."""
    if (layer is None) == (hook is None):
        raise InputError("pass exactly one of layer (residual stream) or hook (any hook name)")
    hook = resid_hook_name(model, layer) if hook is None else hook  # type: ignore[arg-type]
    return _subspaces_at(model, chat, harmful, harmless, [hook], k, pos, pairing, batch_size, model_name, seed, progress)[0]


def compute_activation_subspaces(
    model: HookedModel,
    chat: ChatFormat,
    harmful: PromptSet | Sequence[str],
    harmless: PromptSet | Sequence[str],
    k: int = 4,
    layers: Sequence[int] | None = None,
    pos: int = -1,
    pairing: str = "mean",
    batch_size: int = 32,
    model_name: str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> list[ActivationSubspace]:
    """:func:`compute_activation_subspace` at the residual stream before each of `layers` (default
    every one, 0..n_layers), from one forward pass per batch instead of one per layer."""
    layers = list(range(model.cfg.n_layers + 1)) if layers is None else list(layers)
    hooks = [resid_hook_name(model, layer) for layer in layers]
    return _subspaces_at(model, chat, harmful, harmless, hooks, k, pos, pairing, batch_size, model_name, seed, progress)


def _subspaces_at(model, chat, harmful, harmless, hooks: list[str], k, pos, pairing, batch_size, model_name, seed, progress) -> list[ActivationSubspace]:
    """The activation subspace at each of `hooks`, all from one pass over each prompt set."""
    if pairing not in ("mean", "paired"):
        raise InputError(f"pairing must be 'mean' or 'paired', got {pairing!r}")
    hs = collect_activations_at(model, chat, harmful, hooks, pos, batch_size, progress)
    bs = collect_activations_at(model, chat, harmless, hooks, pos, batch_size, progress)
    common = {"model": model_name or model.cfg.model_name, "pos": pos, "harmful": promptset_provenance(harmful),
              "harmless": promptset_provenance(harmless), "seed": seed}
    return [_pca_subspace(hs[hook], bs[hook], k, pairing, {**common, "hook": hook}) for hook in hooks]


def _pca_subspace(h: Tensor, b: Tensor, k: int, pairing: str, meta: dict[str, Any]) -> ActivationSubspace:
    if pairing == "paired":
        if h.shape[0] != b.shape[0]:
            raise InputError(f"pairing='paired' needs as many harmful as harmless prompts, got {h.shape[0]} and {b.shape[0]}")
        diffs = h - b
    else:
        diffs = torch.cat([h - b.mean(0), h.mean(0) - b])
    max_k = min(diffs.shape)
    if not isinstance(k, int) or not 1 <= k <= max_k:
        raise InputError(f"k must be an integer between 1 and {max_k} (min of #differences and d), got {k!r}")
    _, s, vh = torch.linalg.svd(diffs, full_matrices=False)
    basis = vh[:k].T
    # sign convention: first component points from harmless to harmful
    mean_diff = h.mean(0) - b.mean(0)
    signs = torch.sign(mean_diff @ basis)
    basis = basis * torch.where(signs == 0, torch.ones_like(signs), signs)
    ev = s**2 / (s**2).sum()
    prov = {
        "method": f"uncentred PCA of harmful-minus-harmless differences (pairing={pairing})",
        "model": meta["model"],
        "hook": meta["hook"],
        "pos": meta["pos"],
        "k": k,
        "pairing": pairing,
        "n_differences": diffs.shape[0],
        "harmful": meta["harmful"],
        "harmless": meta["harmless"],
        "explained_variance_total": float(ev[:k].sum()),
        "seed": meta["seed"],
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    return ActivationSubspace(basis, ev[:k], prov)
