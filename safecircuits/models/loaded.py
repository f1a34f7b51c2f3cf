"""The object every model loader returns."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safecircuits.data.chat import ChatFormat
from safecircuits.types import HookedModel

if TYPE_CHECKING:
    from safecircuits.models.profile import ModelProfile


def cache_dir(sub: str | None = None) -> Path:
    """Root of safecircuits' on-disk cache: $SAFECIRCUITS_CACHE, else ~/.cache/safecircuits (an empty
    $SAFECIRCUITS_CACHE counts as unset, so the cache never lands in the working directory)."""
    root = Path(os.environ.get("SAFECIRCUITS_CACHE") or Path.home() / ".cache" / "safecircuits").expanduser()
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def weights_fingerprint(model: HookedModel) -> str:
    """A cheap hash of a model's weights (a strided sample of every parameter): caches keyed by it
    are never reused for another model of the same name."""
    import hashlib

    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().flatten()
            h.update(name.encode() + flat[:: max(1, flat.numel() // 64)][:64].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class LoadedModel:
    """A HookedTransformer with its tokenizer and chat format.

    Unpacks as ``model, tokenizer, chat = load_model(...)``. ``info`` records where the model came
    from (name, source, config, seed, trigger ...) and goes into every result's provenance.
    """

    model: HookedModel
    tokenizer: Any
    chat: ChatFormat
    name: str
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.tokenizer, self.chat))

    @property
    def shape(self) -> dict[str, int | None]:
        """n_layers, n_heads, d_mlp (None for an attention-only model) and d_model."""
        c = self.model.cfg
        return {"n_layers": c.n_layers, "n_heads": c.n_heads, "d_mlp": c.d_mlp, "d_model": c.d_model}

    @functools.cached_property
    def profile(self) -> ModelProfile:
        """How to talk to this model about safety: prompts, judge, objective data, refusal tokens
        (:mod:`safecircuits.models.profile`). Built from ``info``; assign to replace it."""
        from safecircuits.models.profile import OrganismProfile, profile_from_dict

        if "organism" in self.info:
            return OrganismProfile(organism=self.info["organism"])
        return profile_from_dict(self.info.get("profile"))

    def provenance(self) -> dict[str, Any]:
        return {"model": self.name, "shape": self.shape, **{k: v for k, v in self.info.items() if k != "name"},
                "profile": self.profile.to_dict()}
