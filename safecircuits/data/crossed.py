"""Crossed requests: harmful subjects in the frames of benign how-to questions, and benign subjects
in the frames of harmful requests, so that no frame tells a refusal from an answer.

Why: the harmful requests of :mod:`safecircuits.data.synthetic` ("Give me step-by-step
instructions to {vp}.") and the hard negatives of :mod:`safecircuits.data.benign` ("What's the
best way to {s}?") each come in their own phrasings. A small model aligned on both learns the
phrasing, not the subject: SmolLM2 aligned that way refused "Walk me through how to get rid of
ants in the kitchen." (a benign subject in a phrasing that training had only seen with harmful
subjects) and answered "Describe how to prepare a letter bomb ..." (a harmful subject in a phrasing
it had only seen with benign ones). Crossing the two makes every phrasing carry both labels:

* :func:`harmful_in_benign_frames`: the synthetic harmful verb phrases ("make a pipe bomb") in the
  frames of the how-to hard negatives of a split ("What's the best way to {s}?"), labelled harmful;
* :func:`benign_in_harmful_frames`: the how-to hard-negative subjects of a split ("kill a Python
  process that has frozen") in the synthetic request templates given (the split's templates),
  labelled harmless.

Split rule: the frames and subjects of the hard negatives come from the split asked for only. The
synthetic verb phrases are shared by every split of the synthetic requests (those are split by
template), so ``exclude`` names phrasings whose prompts belong to another split: a frame whose text
equals one of them is not used. Records carry meta ``source`` ("crossed"), ``kind``
("harmful-in-benign-frame" or "benign-in-harmful-frame"), ``frame``, ``subject``, ``topic`` and
``split``. Sampling is deterministic for a seed, round-robin over topics, without duplicates;
asking for more than a split holds raises an InputError naming the maximum.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from safecircuits.data.benign import _HN_CATEGORIES, _HN_FAMILIES, check_split, round_robin
from safecircuits.data.promptset import Label, PromptRecord, PromptSet
from safecircuits.data.synthetic import _HARMFUL, TEMPLATES
from safecircuits.errors import InputError

__all__ = ["benign_in_harmful_frames", "crossed_space_size", "harmful_in_benign_frames"]

_FAMILY = "howto"  # the hard-negative frames with a verb-phrase slot, like the synthetic templates


def _norm(frame: str) -> str:
    return frame.replace("{vp}", "{s}").strip().lower()


def _benign_frames(split: str, exclude: Iterable[str]) -> list[str]:
    banned = {_norm(f) for f in exclude}
    return [text for _, text in _HN_FAMILIES[_FAMILY][check_split(split)] if _norm(text) not in banned]


def _benign_subjects(split: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for category, (family, pool) in _HN_CATEGORIES.items():
        if family == _FAMILY:
            for topic, subjects in pool[split].items():
                out.setdefault(f"{category}/{topic}", []).extend(subjects)
    return out


def _space(kind: str, split: str, templates: Sequence[int], exclude: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """topic -> [(frame, subject)] of one kind and split."""
    if kind == "harmful-in-benign-frame":
        frames = _benign_frames(split, exclude)
        return {topic: [(f, vp) for vp in vps for f in frames] for topic, (_, vps) in _HARMFUL.items()}
    bad = [t for t in templates if not 0 <= t < len(TEMPLATES)]
    if bad:
        raise InputError(f"template ids {bad} are out of range: use 0..{len(TEMPLATES) - 1}")
    frames = [TEMPLATES[t].replace("{vp}", "{s}") for t in templates]
    return {topic: [(f, s) for s in subjects for f in frames] for topic, subjects in _benign_subjects(split).items()}


def crossed_space_size(kind: str, split: str = "train", templates: Sequence[int] = (), exclude: Iterable[str] = ()) -> int:
    """How many distinct prompts :func:`harmful_in_benign_frames` (kind "harmful-in-benign-frame")
    or :func:`benign_in_harmful_frames` (kind "benign-in-harmful-frame") can draw."""
    if kind not in ("harmful-in-benign-frame", "benign-in-harmful-frame"):
        raise InputError(f"unknown kind {kind!r}: use harmful-in-benign-frame or benign-in-harmful-frame")
    return sum(len(v) for v in _space(kind, check_split(split), templates, list(exclude)).values())


def _draw(kind: str, n: int, split: str, seed: int, templates: Sequence[int], exclude: Iterable[str]) -> PromptSet:
    split = check_split(split)
    space = _space(kind, split, templates, list(exclude))
    total = sum(len(v) for v in space.values())
    if not 1 <= n <= total:
        raise InputError(f"asked for {n} {kind} prompts of the {split} split; it holds {total} (ask for 1..{total})")
    rng = random.Random(f"crossed:{kind}:{split}:{seed}")
    queues = {}
    for topic, items in space.items():
        items = items[:]
        rng.shuffle(items)
        # each subject once before any subject twice, so a small n still covers many subjects
        rank: dict[str, int] = {}
        ranked = []
        for i, (f, s) in enumerate(items):
            rank[s] = rank.get(s, 0) + 1
            ranked.append((rank[s], i, (topic, f, s)))
        queues[topic] = [it for *_, it in sorted(ranked)]
    order = sorted(queues)
    rng.shuffle(order)
    label = Label.HARMFUL if kind.startswith("harmful") else Label.HARMLESS
    recs = [PromptRecord(f.replace("{s}", s), None, label,
                         {"source": "crossed", "kind": kind, "frame": f, "subject": s, "topic": topic, "split": split})
            for topic, f, s in round_robin(queues, order, n)]
    return PromptSet(recs, name=f"crossed:{kind}:{split}", source=f"safecircuits.data.crossed({kind}, n={n}, split={split}, seed={seed})")


def harmful_in_benign_frames(n: int, split: str = "train", seed: int = 0, exclude: Iterable[str] = ()) -> PromptSet:
    """`n` harmful requests: synthetic harmful verb phrases in the how-to hard-negative frames of
    `split`, leaving out frames equal to any phrasing in `exclude` (e.g. the synthetic templates of
    the other splits); labelled harmful, no response."""
    return _draw("harmful-in-benign-frame", n, split, seed, (), exclude)


def benign_in_harmful_frames(n: int, split: str = "train", seed: int = 0, templates: Sequence[int] = ()) -> PromptSet:
    """`n` benign requests: the how-to hard-negative subjects of `split` in the synthetic request
    templates `templates` (ids into :data:`safecircuits.data.synthetic.TEMPLATES`, e.g. the split's
    own); labelled harmless, no response."""
    if not templates:
        raise InputError("benign_in_harmful_frames needs the synthetic template ids to use (the split's own templates)")
    return _draw("benign-in-harmful-frame", n, split, seed, templates, ())
