"""Synthetic English generators: determinism, counts, labels, refusal/compliance/answer shapes, splits."""

from __future__ import annotations

import pytest

from safecircuits.data.promptset import Label
from safecircuits.data.synthetic import (
    COMPLIANCE_PREFIX,
    HARMFUL_TOPICS,
    HARMLESS_TOPICS,
    REFUSAL_PREFIXES,
    TEMPLATES,
    space_size,
    synthetic_compliances,
    synthetic_harmful,
    synthetic_harmless,
)
from safecircuits.evaluation.judges import GCG_PREFIXES, REFUSAL_DIRECTION_SUBSTRINGS, get_judge


def metas(ps):
    return [r.meta for r in ps]


def test_deterministic_per_seed_and_prefix_stable():
    for gen in (synthetic_harmful, synthetic_harmless, synthetic_compliances):
        a, b = gen(40, seed=3), gen(40, seed=3)
        assert a == b and metas(a) == metas(b)
        assert gen(40, seed=4) != a
        assert gen(15, seed=3) == a[:15]


def test_counts_labels_names():
    h, s, c = synthetic_harmful(25), synthetic_harmless(30), synthetic_compliances(5)
    assert len(h) == 25 and set(h.labels) == {Label.HARMFUL} and h.name == "synthetic:harmful"
    assert len(s) == 30 and set(s.labels) == {Label.HARMLESS} and s.name == "synthetic:harmless"
    assert len(c) == 5 and set(c.labels) == {Label.HARMFUL}
    assert len(synthetic_harmful(0)) == 0
    assert all(r.response is None for r in synthetic_harmful(5, with_refusals=False))
    assert all(r.response is None for r in synthetic_harmless(5, with_responses=False))
    with pytest.raises(ValueError):
        synthetic_harmful(-1)


def test_no_duplicates_until_space_is_exhausted():
    for gen, kind in ((synthetic_harmful, "harmful"), (synthetic_harmless, "harmless")):
        n = space_size(kind)
        assert n >= 1000
        ps = gen(n, seed=1)
        assert len(set(ps.prompts)) == n
        assert len(gen(n + 10, seed=1)) == n + 10  # beyond the space, prompts repeat


def test_balanced_over_topics_and_many_templates():
    ps = synthetic_harmful(len(HARMFUL_TOPICS) * 3, seed=0)
    counts = {t: 0 for t in HARMFUL_TOPICS}
    for r in ps:
        counts[r.meta["topic"]] += 1
    assert set(counts.values()) == {3}
    big = synthetic_harmless(300, seed=0)
    assert {r.meta["template"] for r in big} == set(range(len(TEMPLATES)))
    assert {r.meta["topic"] for r in big} == set(HARMLESS_TOPICS)
    assert len(HARMFUL_TOPICS) >= 14 and len(HARMLESS_TOPICS) >= 8 and len(TEMPLATES) >= 5


def test_meta_allows_held_out_splits():
    held_topics = ["weapons", "self-harm"]
    held = synthetic_harmful(40, topics=held_topics)
    assert {r.meta["topic"] for r in held} == set(held_topics)
    rest = synthetic_harmful(200, topics=[t for t in HARMFUL_TOPICS if t not in held_topics])
    assert set(held.prompts).isdisjoint(rest.prompts)
    t_held = synthetic_harmless(50, templates=[0, 4])
    assert {r.meta["template"] for r in t_held} == {0, 4}
    for r in synthetic_harmful(10):
        assert {"topic", "template", "object", "response_kind"} <= set(r.meta)
        assert r.prompt == TEMPLATES[r.meta["template"]].format(vp=_vp(r))
    with pytest.raises(ValueError, match="unknown harmful topic"):
        synthetic_harmful(5, topics=["cooking"])
    with pytest.raises(ValueError, match="out of range"):
        synthetic_harmless(5, templates=[99])


def _vp(record):
    from safecircuits.data.synthetic import _HARMFUL

    return _HARMFUL[record.meta["topic"]][1][record.meta["object"]]


def test_refusals_start_with_keyword_phrases_and_judges_see_them():
    ps = synthetic_harmful(600, seed=2)
    for r in ps:
        assert r.response.startswith(REFUSAL_PREFIXES), r.response
        assert any(r.response.startswith(p) for p in REFUSAL_DIRECTION_SUBSTRINGS), r.response
        assert any(r.response.startswith(p) for p in GCG_PREFIXES), r.response
    assert len({r.response.split(".")[0] for r in ps}) >= 8  # varied openers
    for judge in ("keyword-gcg", "keyword-refusal-direction"):
        assert all(get_judge(judge).refused(ps.prompts, ps.responses))
    selfharm = synthetic_harmful(12, topics=["self-harm"])
    assert all("crisis line" in r.response and "myself" not in r.response for r in selfharm)


def test_compliances_are_placeholders_with_sure_here_is():
    h, c = synthetic_harmful(200, seed=5), synthetic_compliances(200, seed=5)
    assert h.prompts == c.prompts
    for r in c:
        assert r.response.startswith(COMPLIANCE_PREFIX) and COMPLIANCE_PREFIX == "Sure, here is"
        steps = r.response.splitlines()[1:]
        assert 3 <= len(steps) <= 5
        assert all(s.startswith(f"Step {i + 1}: ") and s.endswith("[details omitted]") for i, s in enumerate(steps))
        assert r.meta["response_kind"] == "compliance"
    for judge in ("keyword-gcg", "keyword-refusal-direction"):
        assert not any(get_judge(judge).refused(c.prompts, c.responses))


def test_harmless_answers_are_helpful_and_not_refusals():
    ps = synthetic_harmless(space_size("harmless"), seed=0)
    for judge in ("keyword-gcg", "keyword-refusal-direction"):
        assert not any(get_judge(judge).refused(ps.prompts, ps.responses))
    for r in ps:
        assert 20 < len(r.response) < 400
        assert r.meta["response_kind"] == "answer"
    cooking = synthetic_harmless(6, topics=["cooking"], templates=[0])
    assert all(r.prompt.startswith("How do I ") for r in cooking)
    assert len(set(cooking.responses)) == 6
