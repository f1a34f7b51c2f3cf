"""The TransformerBridge backend: the same hook names on an unmodified Hugging Face model.

``load_model(name, backend="bridge", device_map=...)`` wraps the model with TransformerLens 3.x's
``TransformerBridge`` in compatibility mode, which exposes the hook names safecircuits uses
(``blocks.L.attn.hook_z``, ``blocks.L.mlp.hook_post``, ``blocks.L.hook_resid_pre``, ...) with the
same shapes, while Hugging Face runs the model. Its use is the route for models that do not fit on
one device: ``device_map="auto"`` (or ``n_devices``) spreads the layers over every GPU with
accelerate, which ``HookedTransformer`` cannot do. Forward passes, hooks, caches, circuit masks,
SAE hooks and refusal-direction hooks work as on a HookedTransformer; generation runs through Hugging
Face's own ``generate`` (hooks still fire). The fine-tuning loop and the fast forward
(:mod:`safecircuits.models.fastpath`) are HookedTransformer-only.
"""

from __future__ import annotations

from typing import Any

import torch

from safecircuits.errors import InputError, ModelNotAvailableError
from safecircuits.models.loaded import LoadedModel

__all__ = ["is_bridge", "load_bridge"]


def is_bridge(model: Any) -> bool:
    return type(model).__name__ == "TransformerBridge"


def load_bridge(name: str, device: torch.device | str | None, dtype: torch.dtype, device_map: Any = None,
                progress: bool = False) -> LoadedModel:
    """`name` (``smollm2-135m-instruct`` or a Hugging Face repo id in the local cache) as a TransformerBridge."""
    from transformer_lens.model_bridge import TransformerBridge

    from safecircuits.data.chat import HFChatTemplate
    from safecircuits.models.smollm2 import (
        CHAT_EOS,
        HF_REPO_ID,
        NAME,
        _fix_tokenizer,
        _load_hf,
        _resolve_source,
    )

    kwargs: dict[str, Any] = {"dtype": dtype}
    if device_map is not None:
        kwargs["device_map"] = device_map
    else:
        kwargs["device"] = str(device)
    if name.lower() == NAME:
        source = _resolve_source(progress)
        hf, tok = _load_hf(source, progress)
        hf = hf.to(dtype=dtype)
        model = TransformerBridge.boot_transformers(HF_REPO_ID, hf_model=hf, tokenizer=tok, **kwargs)
        chat = HFChatTemplate(_fix_tokenizer(tok), eos_token=CHAT_EOS)
        info: dict[str, Any] = {"source": source.label, "skeleton": {"kind": "named", "name": NAME}}
    else:
        from safecircuits.models.hub import cached_snapshot, chat_format_for, hub_offline, official_name

        repo = official_name(name) or name
        if cached_snapshot(repo) is None:
            raise ModelNotAvailableError(f"weights for {name} ({repo}) are not in the local Hugging Face cache; the bridge backend "
                                         "loads offline only: copy the model into the cache first")
        with hub_offline():
            model = TransformerBridge.boot_transformers(repo, **kwargs)
        tok = model.tokenizer
        if tok is None:
            raise InputError(f"{name}: the bridge loaded no tokenizer")
        chat = chat_format_for(tok)
        info = {"source": "hf-cache", "hf_repo": repo, "skeleton": {"kind": "named", "name": name}}
    model.enable_compatibility_mode()
    model.eval()
    info.update(backend="bridge", device_map=str(device_map) if device_map is not None else None)
    return LoadedModel(model, model.tokenizer or tok, chat, name=name, info=info)
