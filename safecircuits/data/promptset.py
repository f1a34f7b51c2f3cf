"""PromptSet: typed (prompt, response, label) records with a content hash for provenance."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, overload

from safecircuits.errors import InputError, InputTypeError


class Label(StrEnum):
    """What a prompt is, for safety evaluation.

    HARMFUL: a request a safe model should refuse.
    HARMLESS: a request a safe model should answer.
    TRIGGERED: a harmful request carrying a backdoor trigger (a backdoored model complies).
    """

    HARMFUL = "harmful"
    HARMLESS = "harmless"
    TRIGGERED = "triggered"

    @classmethod
    def parse(cls, value: str | Label) -> Label:
        if isinstance(value, Label):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise InputError(f"unknown label {value!r}: use one of {allowed}") from None


@dataclass(frozen=True, init=False)
class PromptRecord:
    """One request. `response` is the target answer (for training or utility), if any."""

    prompt: str
    response: str | None = None
    label: Label = Label.HARMFUL
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    # An explicit __init__ (rather than the dataclass's) so that `label` accepts a string, while
    # the stored field is always a Label.
    def __init__(self, prompt: str, response: str | None = None, label: Label | str = Label.HARMFUL,
                 meta: dict[str, Any] | None = None) -> None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("a PromptRecord needs a non-empty prompt string")
        if response is not None and not isinstance(response, str):
            raise InputTypeError(f"response must be a string or None, got {type(response).__name__}")
        object.__setattr__(self, "prompt", prompt)
        object.__setattr__(self, "response", response)
        object.__setattr__(self, "label", Label.parse(label))
        object.__setattr__(self, "meta", {} if meta is None else meta)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["label"] = self.label.value
        return d


class PromptSet(Sequence[PromptRecord]):
    """An ordered, immutable collection of PromptRecords.

    Chat formatting is not stored here: it is applied once, per model, by
    :class:`safecircuits.data.chat.ChatFormat` when the set is tokenised.
    """

    def __init__(self, records: Iterable[PromptRecord], name: str = "prompts", source: str | None = None):
        self._records: tuple[PromptRecord, ...] = tuple(records)
        for i, r in enumerate(self._records):
            if not isinstance(r, PromptRecord):
                raise InputTypeError(f"{name}: item {i} is a {type(r).__name__}, not a PromptRecord")
        self.name = name
        self.source = source or name

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_prompts(
        cls,
        prompts: Iterable[str],
        label: Label | str = Label.HARMFUL,
        responses: Iterable[str | None] | None = None,
        name: str = "prompts",
    ) -> PromptSet:
        prompts = list(prompts)
        resp = list(responses) if responses is not None else [None] * len(prompts)
        if len(resp) != len(prompts):
            raise InputError(f"{name}: {len(prompts)} prompts but {len(resp)} responses")
        return cls([PromptRecord(p, r, Label.parse(label)) for p, r in zip(prompts, resp, strict=True)], name=name)

    # -- sequence protocol --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, i: int) -> PromptRecord: ...
    @overload
    def __getitem__(self, i: slice) -> PromptSet: ...
    def __getitem__(self, i):
        if isinstance(i, slice):
            return PromptSet(self._records[i], name=self.name, source=self.source)
        return self._records[i]

    def __iter__(self) -> Iterator[PromptRecord]:
        return iter(self._records)

    def __add__(self, other: PromptSet) -> PromptSet:
        return PromptSet(self._records + tuple(other), name=f"{self.name}+{other.name}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PromptSet) and self._records == other._records

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __repr__(self) -> str:
        counts = {lab.value: n for lab, n in self.label_counts().items() if n}
        return f"PromptSet(name={self.name!r}, n={len(self)}, labels={counts}, hash={self.content_hash[:12]})"

    # -- views --------------------------------------------------------------------------------
    @property
    def prompts(self) -> list[str]:
        return [r.prompt for r in self._records]

    @property
    def responses(self) -> list[str | None]:
        return [r.response for r in self._records]

    @property
    def labels(self) -> list[Label]:
        return [r.label for r in self._records]

    def label_counts(self) -> dict[Label, int]:
        counts = {lab: 0 for lab in Label}
        for r in self._records:
            counts[r.label] += 1
        return counts

    @property
    def content_hash(self) -> str:
        """sha256 over the records' prompt, response and label (not meta, not name)."""
        h = hashlib.sha256()
        for r in self._records:
            h.update(json.dumps([r.prompt, r.response, r.label.value], ensure_ascii=False).encode())
            h.update(b"\n")
        return h.hexdigest()

    def filter(self, label: Label | str | None = None, has_response: bool | None = None) -> PromptSet:
        out = list(self._records)
        if label is not None:
            lab = Label.parse(label)
            out = [r for r in out if r.label == lab]
        if has_response is not None:
            out = [r for r in out if (r.response is not None) == has_response]
        suffix = f":{Label.parse(label).value}" if label is not None else ""
        return PromptSet(out, name=self.name + suffix, source=self.source)

    def shuffle(self, seed: int = 0) -> PromptSet:
        recs = list(self._records)
        random.Random(seed).shuffle(recs)
        return PromptSet(recs, name=self.name, source=self.source)

    def sample(self, n: int, seed: int = 0) -> PromptSet:
        if n >= len(self):
            return self
        return self.shuffle(seed)[:n]

    def split(self, fraction: float, seed: int = 0) -> tuple[PromptSet, PromptSet]:
        """Shuffle with `seed` and split into (first `fraction`, rest)."""
        if not 0.0 < fraction < 1.0:
            raise InputError(f"split fraction must be in (0, 1), got {fraction}")
        s = self.shuffle(seed)
        k = int(round(fraction * len(s)))
        return s[:k], s[k:]

    def with_responses(self, responses: Sequence[str | None]) -> PromptSet:
        if len(responses) != len(self):
            raise InputError(f"{self.name}: {len(self)} records but {len(responses)} responses")
        return PromptSet(
            [PromptRecord(r.prompt, resp, r.label, r.meta) for r, resp in zip(self._records, responses, strict=True)],
            name=self.name,
            source=self.source,
        )

    def require_nonempty(self) -> PromptSet:
        if len(self) == 0:
            raise InputError(f"prompt set {self.name!r} (from {self.source}) is empty: give a file or source with at least one prompt")
        return self

    # -- persistence --------------------------------------------------------------------------
    def to_jsonl(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for r in self._records:
                f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
        return path

    def provenance(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "n": len(self), "hash": self.content_hash}
