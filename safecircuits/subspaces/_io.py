"""Saving and loading subspace result objects: tensors in safetensors (or .pt), metadata as JSON.

Every object is written as one file. With a ``.safetensors`` suffix the tensors go into the
safetensors file and the JSON metadata into its header (``__metadata__["json"]``); any other
suffix (``.pt`` by convention) is a ``torch.save`` dict of tensors plus the JSON string, loaded
with ``weights_only=True``. Both load without the model. Writes are atomic (temp file, rename).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from safecircuits.errors import InputError, MissingFileError


def json_default(o: Any) -> Any:
    if isinstance(o, Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "value"):
        return o.value
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_bundle(path: str | Path, fmt: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Write `tensors` and JSON-able `meta` (tagged with format `fmt`) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_json = json.dumps({"format": fmt, **meta}, default=json_default)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".safetensors":
        save_file(tensors, str(tmp), metadata={"format": fmt, "json": meta_json})
    else:
        torch.save({"format": fmt, "tensors": tensors, "json": meta_json}, tmp)
    from safecircuits.io import _normal_mode

    _normal_mode(tmp, is_dir=False)  # safetensors writes 0600; results get the user's normal mode
    tmp.replace(path)
    return path


def load_bundle(path: str | Path, fmt: str, what: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_bundle`; raises naming the problem when it is not one."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{what} file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
        except Exception as e:  # noqa: BLE001 - not a safetensors file at all
            raise InputError(f"{path}: not a safecircuits {what} file ({type(e).__name__}: {e})") from None
        if header.get("format") != fmt:
            raise InputError(f"{path}: not a safecircuits {what} (format {header.get('format')!r}, expected {fmt!r})")
        return load_file(str(path)), json.loads(header["json"])
    try:
        d = torch.load(path, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not our file"
        raise InputError(f"{path}: not a safecircuits {what} file ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict) or d.get("format") != fmt:
        got = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise InputError(f"{path}: not a safecircuits {what} (format {got!r}, expected {fmt!r})")
    return d["tensors"], json.loads(d["json"])


def promptset_provenance(ps: Any) -> dict[str, Any]:
    """Provenance of a PromptSet, or of a plain list of prompts (hash of the joined text)."""
    if hasattr(ps, "provenance"):
        return ps.provenance()
    import hashlib

    prompts = list(ps)
    return {"name": "prompts", "n": len(prompts), "hash": hashlib.sha256("\n".join(prompts).encode()).hexdigest()[:16]}
