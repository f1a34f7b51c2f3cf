"""Crossed requests: every phrasing carries both labels, and nothing reaches a val/test prompt."""

from __future__ import annotations

from collections import Counter

import pytest

from safecircuits.data.benign import hard_negatives, space_size
from safecircuits.data.crossed import benign_in_harmful_frames, crossed_space_size, harmful_in_benign_frames
from safecircuits.data.promptset import Label
from safecircuits.data.synthetic import TEMPLATES, synthetic_harmful
from safecircuits.models.profile import TEMPLATE_SPLITS

OTHER = [TEMPLATES[i] for s in ("val", "test") for i in TEMPLATE_SPLITS[s]]


def test_harmful_in_benign_frames_never_builds_a_val_or_test_synthetic_prompt():
    n = crossed_space_size("harmful-in-benign-frame", "train", exclude=OTHER)
    ps = harmful_in_benign_frames(n, "train", exclude=OTHER)
    assert len(set(ps.prompts)) == n and all(r.label == Label.HARMFUL for r in ps)
    held_out = set(synthetic_harmful(2000, response="none", templates=[i for s in ("val", "test") for i in TEMPLATE_SPLITS[s]]).prompts)
    assert not set(ps.prompts) & held_out
    # without the exclusion, "How do I {s}?" (a test template) would be used and collide
    assert set(harmful_in_benign_frames(crossed_space_size("harmful-in-benign-frame", "train"), "train").prompts) & held_out
    # the frames are the train how-to hard negatives' own
    hn_frames = {r.prompt.replace(r.meta["subject"], "{s}") for r in hard_negatives(space_size("train", "hard-negative"), "train")}
    assert {r.meta["frame"] for r in ps} <= hn_frames


def test_benign_in_harmful_frames_uses_train_subjects_in_the_given_templates():
    n = crossed_space_size("benign-in-harmful-frame", "train", templates=TEMPLATE_SPLITS["train"])
    ps = benign_in_harmful_frames(n, "train", templates=TEMPLATE_SPLITS["train"])
    assert len(set(ps.prompts)) == n and all(r.label == Label.HARMLESS for r in ps)
    train_frames = {TEMPLATES[i].replace("{vp}", "{s}") for i in TEMPLATE_SPLITS["train"]}
    assert {r.meta["frame"] for r in ps} == train_frames
    hn_subjects = {r.meta["subject"] for r in hard_negatives(space_size("train", "hard-negative"), "train")}
    val_test = {r.meta["subject"] for s in ("val", "test") for r in hard_negatives(space_size(s, "hard-negative"), s)}
    assert {r.meta["subject"] for r in ps} <= hn_subjects and not {r.meta["subject"] for r in ps} & val_test


def test_crossed_sampling_is_deterministic_prefix_stable_and_spread():
    a = harmful_in_benign_frames(60, seed=3, exclude=OTHER)
    assert a.prompts == harmful_in_benign_frames(60, seed=3, exclude=OTHER).prompts
    assert a.prompts[:20] == harmful_in_benign_frames(20, seed=3, exclude=OTHER).prompts
    assert a.prompts != harmful_in_benign_frames(60, seed=4, exclude=OTHER).prompts
    assert len(Counter(r.meta["topic"] for r in a)) >= 10  # round-robin over topics
    assert len({r.meta["subject"] for r in a}) == 60  # every subject once before any twice


def test_crossed_bad_input_names_the_limit():
    n = crossed_space_size("benign-in-harmful-frame", "train", templates=TEMPLATE_SPLITS["train"])
    with pytest.raises(ValueError, match=f"holds {n}"):
        benign_in_harmful_frames(n + 1, templates=TEMPLATE_SPLITS["train"])
    with pytest.raises(ValueError, match="template ids"):
        benign_in_harmful_frames(1, templates=[99])
    with pytest.raises(ValueError, match="synthetic template ids"):
        benign_in_harmful_frames(1)
    with pytest.raises(ValueError, match="unknown kind"):
        crossed_space_size("other")
