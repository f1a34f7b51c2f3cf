"""Atomic writes and JSON, in one place.

Every file safecircuits writes goes through here, so a crash or a Ctrl-C never leaves a half
written file where a finished one is expected: content goes to a temporary sibling first, which
is then renamed over the target (``os.replace``, atomic on POSIX). Results get the permissions any
new file of the user's gets (``0o666`` / ``0o777`` minus the umask); temporary files alone would
be private (0600 / 0700).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_dir", "atomic_file", "json_default", "json_record", "read_json", "save_with", "write_json", "write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _normal_mode(path: Path, is_dir: bool) -> None:
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def json_default(o: Any) -> Any:
    """JSON for the types results hold: paths, tensors and numpy scalars/arrays, dataclasses, sets."""
    import dataclasses

    if isinstance(o, Path):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    if hasattr(o, "tolist"):  # torch tensors, numpy arrays and scalars
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def json_record(obj: Any, max_examples: int | None = 3) -> Any:
    """A JSON-ready copy of a result for a results file: result objects become dicts (``to_dict``),
    other values as :func:`json_default` writes them, and each list under an ``examples`` dict is
    cut to `max_examples` (None = keep all)."""
    import json

    d = obj.to_dict() if hasattr(obj, "to_dict") else obj
    d = json.loads(json.dumps(d, default=json_default))
    if max_examples is not None and isinstance(d, dict) and isinstance(d.get("examples"), dict):
        d["examples"] = {k: v[:max_examples] if isinstance(v, list) else v for k, v in d["examples"].items()}
    return d


@contextlib.contextmanager
def atomic_file(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """``with atomic_file(p) as tmp: write(tmp)``: `tmp` is renamed to `p` when the body succeeds
    and removed when it raises. The parent directory is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _normal_mode(tmp, is_dir=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """``with atomic_dir(d) as tmp: write files into tmp``: `tmp` replaces `d` (an existing `d` is
    removed) when the body succeeds, and is removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for p in [tmp, *tmp.rglob("*")]:
            _normal_mode(p, p.is_dir())
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, payload: Any, indent: int | None = 1) -> Path:
    """`payload` as JSON (tensors, paths, dataclasses handled by :func:`json_default`), atomically."""
    return write_text(path, json.dumps(payload, indent=indent, default=json_default))


def read_json(path: str | Path, what: str = "JSON file", fix: str = "check the path") -> Any:
    """Parse a JSON file; a missing or malformed file raises a clear safecircuits error."""
    from safecircuits.errors import DataFormatError, MissingFileError

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {path} does not exist; {fix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(path, f"is not a valid {what} ({e})", fix) from None


def save_with(path: str | Path, writer: Callable[[Path], Any], suffix: str = "") -> Path:
    """``writer(tmp)`` writes the file (``torch.save``, safetensors ``save_file`` ...); then renamed atomically."""
    with atomic_file(path, suffix) as tmp:
        writer(tmp)
    return Path(path)
