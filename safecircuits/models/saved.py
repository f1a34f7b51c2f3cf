"""The directory format of a model that safecircuits changed: fine-tuned, aligned or backdoored.

``save_model_dir(lm, path, provenance)`` writes ``model.safetensors`` (every parameter) and
``config.json``: the format tag, the model's name, its *skeleton* (how to rebuild the architecture,
tokenizer and chat format: an organism config, or the name of the model it was derived from), its
profile (for a backdoored model: the trigger) and the provenance of how it was made.
``load_model(DIR)`` reads it back; nothing else needs to be cached but the skeleton's source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from safecircuits.data.chat import ChatFormat
from safecircuits.errors import DataFormatError, InputError, MissingFileError
from safecircuits.io import atomic_dir, json_default, read_json
from safecircuits.models.loaded import LoadedModel
from safecircuits.types import HookedModel

FORMAT = "safecircuits-finetuned"

__all__ = ["FORMAT", "load_saved_dir", "save_model_dir", "skeleton_of"]


def skeleton_of(lm: LoadedModel) -> dict[str, Any]:
    """How to rebuild `lm`'s architecture, tokenizer and chat format (recorded by every loader)."""
    sk = lm.info.get("skeleton")
    if sk is None:
        raise InputError(f"{lm.name} records no skeleton (lm.info['skeleton']): it was not made by load_model, so it cannot "
                         "be saved as a model directory; save its state_dict instead")
    return dict(sk)


def save_model_dir(lm: LoadedModel, path: str | Path, provenance: dict[str, Any],
                   weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `lm` (or `weights` in place of some of its parameters, e.g. float32 masters) to `path` atomically."""
    import json

    state = {k: (weights or {}).get(k, v) for k, v in lm.model.state_dict().items()}
    meta = {"format": FORMAT, "name": lm.name, "skeleton": skeleton_of(lm), "profile": lm.profile.to_dict(),
            "provenance": json.loads(json.dumps(provenance, default=json_default))}
    with atomic_dir(path) as tmp:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(meta, indent=1))
    return Path(path)


def load_saved_dir(path: str | Path) -> LoadedModel:
    """A directory written by :func:`save_model_dir`, on the CPU in float32 (``load_model`` places it)."""
    path = Path(path)
    meta = read_json(path / "config.json", "model directory config", "pass a directory written by safecircuits")
    if meta.get("format") != FORMAT:
        raise DataFormatError(path / "config.json", f"has format {meta.get('format')!r}, expected {FORMAT!r}",
                              "pass a directory written by safecircuits")
    if not (path / "model.safetensors").is_file():
        raise MissingFileError(f"{path} has no model.safetensors: the directory is incomplete; write it again")
    sk = meta.get("skeleton") or _legacy_skeleton(meta)
    state = load_file(str(path / "model.safetensors"))
    prov = meta.get("provenance", {})
    info: dict[str, Any] = {"source": str(path), "finetune": prov, "base_model": prov.get("base_model"), "skeleton": sk}
    model: HookedModel
    chat: ChatFormat
    if sk["kind"] == "organism":
        from safecircuits.models.organisms import OrganismConfig, build_tokenizer, new_model, organism_chat

        cfg = OrganismConfig(**sk["organism"])
        tok = build_tokenizer(cfg.extra_tokens)
        model = new_model(cfg, tok)
        chat = organism_chat(tok)
        info.update({"organism": cfg.to_dict(), "config_hash": cfg.hash})
    else:
        from safecircuits.models import load_model

        root = load_model(sk["name"], device="cpu", dtype="float32", progress=False, fast=False)
        model, tok, chat = root.model, root.tokenizer, root.chat
        info["base_model"] = prov.get("base_model") or sk["name"]
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    if meta.get("profile"):
        info["profile"] = meta["profile"]
    model.eval()
    return LoadedModel(model, tok, chat, name=meta.get("name", str(path)), info=info)


def _legacy_skeleton(meta: dict[str, Any]) -> dict[str, Any]:
    """Directories written before the skeleton was recorded name it ``base``."""
    base = meta.get("base") or {}
    if base.get("kind") == "organism":
        return {"kind": "organism", "organism": base["organism"]}
    if base.get("kind") == "named":
        return {"kind": "named", "name": base["name"]}
    raise DataFormatError("config.json", "records neither a skeleton nor a base model", "write the model directory again")
