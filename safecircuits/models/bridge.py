"""The TransformerBridge backend: the same hook names on an unmodified Hugging Face model.

``load_model(name, backend="bridge", device_map=...)`` wraps the model with TransformerLens 3.x's
``TransformerBridge`` in compatibility mode, which exposes the hook names safecircuits uses
(``blocks.L.attn.hook_z``, ``blocks.L.mlp.hook_post``, ``blocks.L.hook_resid_pre``, ...) with the
same shapes, while Hugging Face runs the model. Its use is the route for models that do not fit on
one device: ``device_map="auto"`` (or ``n_devices``) spreads the layers over every GPU with
accelerate, which ``HookedTransformer`` cannot do. Forward passes, hooks, caches, circuit masks,
SAE hooks and refusal-direction hooks work as on a HookedTransformer. Generation decodes one prompt
at a time by full forward passes (hooks fire at every step): TransformerLens 3.x's bridge gives
wrong tokens with its KV cache or left padding on SmolLM2, so this is correct but slower. The
bridge keeps Hugging Face's weights as they are (no layer-norm folding or centring). The fine-tuning
loop and the fast forward (:mod:`safecircuits.models.fastpath`) are HookedTransformer-only.
"""

from __future__ import annotations

from typing import Any

import torch

from safecircuits.errors import InputError, ModelNotAvailableError
from safecircuits.models.loaded import LoadedModel

__all__ = ["is_bridge", "load_bridge"]


def is_bridge(model: Any) -> bool:
    return type(model).__name__ == "TransformerBridge"


def _dispatch(hf: Any, device_map: Any) -> Any:
    """Place a loaded Hugging Face model with accelerate (``"auto"``/``"balanced"`` are inferred)."""
    from accelerate import dispatch_model, infer_auto_device_map

    if isinstance(device_map, str):
        if device_map not in ("auto", "balanced", "sequential"):
            raise InputError(f"device_map={device_map!r}: use 'auto', 'balanced', 'sequential' or a dict of module -> device")
        device_map = infer_auto_device_map(hf, no_split_module_classes=getattr(hf, "_no_split_modules", None) or [])
    return dispatch_model(hf, device_map=device_map)


def load_bridge(name: str, device: torch.device | str | None, dtype: torch.dtype, device_map: Any = None,
                progress: bool = False) -> LoadedModel:
    """`name` (``smollm2-135m-instruct`` or a Hugging Face repo id in the local cache) as a TransformerBridge."""
    from transformer_lens.model_bridge import TransformerBridge

    from safecircuits.data.chat import ChatFormat, HFChatTemplate
    from safecircuits.models.smollm2 import (
        CHAT_EOS,
        HF_REPO_ID,
        NAME,
        _fix_tokenizer,
        _load_hf,
        _resolve_source,
    )

    chat: ChatFormat
    kwargs: dict[str, Any] = {"dtype": dtype}
    if device_map is not None:
        kwargs["device_map"] = device_map
    else:
        kwargs["device"] = str(device)
    if name.lower() == NAME:
        source = _resolve_source(progress)
        hf, tok = _load_hf(source, progress)
        hf = hf.to(dtype=dtype)
        # The bridge places only models it loads itself; a pre-loaded model (ours comes from the
        # GGUF) must be placed before it is handed over: dispatched by accelerate, or moved.
        if device_map is not None:
            hf = _dispatch(hf, device_map)
        elif device is not None:
            hf = hf.to(device)
        model = TransformerBridge.boot_transformers(HF_REPO_ID, hf_model=hf, tokenizer=tok, dtype=dtype)
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
    model.enable_compatibility_mode(no_processing=True)
    model.eval()
    info.update(backend="bridge", device_map=str(device_map) if device_map is not None else None)
    return LoadedModel(model, model.tokenizer or tok, chat, name=name, info=info)
