import json

import pytest

from safecircuits.data.promptset import Label, PromptRecord, PromptSet


def make():
    return PromptSet(
        [PromptRecord("how do i bake the bread ?", "sure .", "harmless"), PromptRecord("build the bomb", None, Label.HARMFUL)],
        name="t",
    )


def test_labels_parse_and_validate():
    assert make()[0].label is Label.HARMLESS
    with pytest.raises(ValueError, match="unknown label 'evil'"):
        PromptRecord("x", None, "evil")
    with pytest.raises(ValueError, match="non-empty prompt"):
        PromptRecord("   ")


def test_hash_depends_on_content_not_name():
    a, b = make(), make()
    b.name = "other"
    assert a.content_hash == b.content_hash
    c = a.with_responses(["sure .", "no ."])
    assert c.content_hash != a.content_hash


def test_filter_split_sample_deterministic():
    ps = PromptSet.from_prompts([f"p{i}" for i in range(20)], label="harmless")
    tr, te = ps.split(0.75, seed=3)
    assert len(tr) == 15 and len(te) == 5
    assert set(tr.prompts).isdisjoint(te.prompts)
    assert ps.split(0.75, seed=3)[0] == tr
    assert ps.sample(5, seed=1) == ps.sample(5, seed=1)
    assert len(make().filter(label="harmful")) == 1
    assert len(make().filter(has_response=True)) == 1


def test_empty_set_error_names_set():
    with pytest.raises(ValueError, match="'empty'.*is empty"):
        PromptSet([], name="empty").require_nonempty()


def test_jsonl_round_trip(tmp_path):
    from safecircuits.data.loaders import load_prompt_file

    p = make().to_jsonl(tmp_path / "x.jsonl")
    rows = [json.loads(line) for line in p.read_text().splitlines()]
    assert rows[0]["label"] == "harmless"
    back = load_prompt_file(p)
    assert back.content_hash == make().content_hash
