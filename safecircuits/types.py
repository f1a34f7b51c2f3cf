"""Type aliases shared across safecircuits."""

from __future__ import annotations

from transformer_lens import HookedTransformer
from transformer_lens.model_bridge import TransformerBridge

#: A model with TransformerLens hook points: a ``HookedTransformer`` (the default backend) or a
#: ``TransformerBridge`` (``load_model(..., backend="bridge")``). Analysis functions take either.
HookedModel = HookedTransformer | TransformerBridge

__all__ = ["HookedModel", "HookedTransformer", "TransformerBridge"]
