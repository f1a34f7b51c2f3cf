"""One builder for the provenance every result records: how it was made.

``provenance(lm, data={...}, seed=..., config=..., method=...)`` gives the model (name, shape,
profile, dtype, device, where it came from), the data (each PromptSet's name, size and content
hash, and one hash over them), the seed, the configuration, the versions of safecircuits, torch,
TransformerLens and SAELens, and the time. Results store it so they save and load without the
model in memory.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from importlib import metadata
from typing import Any

__all__ = ["data_hash", "provenance", "versions"]


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("safecircuits", "torch", "transformer-lens", "sae-lens"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def data_hash(data: dict[str, Any]) -> str:
    """One hash over named PromptSets (their content hashes, in name order)."""
    h = hashlib.sha256()
    for k in sorted(data):
        v = data[k]
        h.update(k.encode() + str(getattr(v, "content_hash", v)).encode())
    return h.hexdigest()


def model_record(lm: Any) -> dict[str, Any]:
    """The model part of a provenance record (a LoadedModel, or anything with ``cfg``)."""
    if hasattr(lm, "provenance") and hasattr(lm, "profile"):
        p = lm.provenance()
        keep = ("model", "shape", "profile", "dtype", "device", "source", "base_model", "config_hash", "skeleton", "backend")
        return {k: p.get(k) for k in keep if p.get(k) is not None}
    cfg = getattr(lm, "cfg", None)
    return {"model": getattr(cfg, "model_name", None)}


def provenance(lm: Any = None, *, data: dict[str, Any] | None = None, seed: int | None = None, config: Any = None,
               **extra: Any) -> dict[str, Any]:
    """The provenance record of a result (module docstring); `extra` keys are added as they are."""
    rec: dict[str, Any] = {}
    if lm is not None:
        rec.update(model_record(lm))
    if data:
        rec["data"] = {k: (v.provenance() if hasattr(v, "provenance") else v) for k, v in data.items()}
        rec["data_hash"] = data_hash(data)
    if seed is not None:
        rec["seed"] = seed
    if config is not None:
        rec["config"] = config.to_dict() if hasattr(config, "to_dict") else config
    rec.update(extra)
    rec["versions"] = versions()
    rec["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return rec
