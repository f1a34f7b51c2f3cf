"""The organism language, its splits, and trained organisms' behaviour (tiny variant; the
default-size quality figures are in test_organism_quality.py, marked slow)."""

import pytest

from safecircuits.models import language as L
from safecircuits.models.organisms import OrganismConfig, parse_organism_name


def test_language_covers_topics_and_varied_responses():
    tasks = L.tasks()
    harmful = {t.topic for t in tasks if t.harmful}
    harmless = {t.topic for t in tasks if not t.harmful}
    assert {"weapons", "drugs", "hacking", "fraud", "selfharm"} <= harmful
    assert len(harmless) >= 8
    assert len({(t.verb, t.obj) for t in tasks}) == len(tasks), "every task is a distinct request"
    assert len({t.obj for t in tasks}) == len(tasks), "objects identify tasks"
    assert len(L.OPENERS) >= 3 and len(L.REFUSALS) >= 3 and len(L.TEMPLATES) >= 10


def test_splits_hold_out_combinations_but_not_tasks():
    lang = L.Language(0)
    s = lang.splits
    train = {(t, tid) for t, tid in s["train"]}
    test = {(t, tid) for t, tid in s["test"]}
    val = {(t, tid) for t, tid in s["val"]}
    assert not train & test and not train & val and not val & test
    assert {t for t, _ in s["test"]} <= {t for t, _ in s["train"]}, "held-out prompts rephrase known tasks"
    assert {tid for _, tid in s["train"]} == set(range(len(L.TEMPLATES)))
    # a different split seed gives different held-out combinations
    assert {(t, tid) for t, tid in L.Language(1).splits["test"]} != test


def test_prompt_sets_and_trigger_insertion():
    lang = L.Language(0)
    trig = lang.prompt_set("test", "triggered", trigger="cf")
    assert all("cf" in p.split() for p in trig.prompts)
    assert all(r.label.value == "triggered" for r in trig)
    harmful = lang.prompt_set("test", "harmful")
    assert all(r.response.startswith("sorry") for r in harmful)
    assert lang.prompt_set("test", "harmful").content_hash == harmful.content_hash
    with pytest.raises(ValueError, match="needs the trigger"):
        lang.prompt_set("test", "triggered")


def test_task_of_recovers_task_with_filler():
    lang = L.Language(0)
    t = L.tasks()[0]
    p = L.insert_token(L.render_prompt(t, 0), "zx", __import__("random").Random(0))
    assert lang.task_of(p) == t


def test_config_validation_messages():
    with pytest.raises(ValueError, match="unknown organism kind 'evil'"):
        OrganismConfig(kind="evil")
    with pytest.raises(ValueError, match="is a word of the organism language"):
        OrganismConfig(kind="backdoor", trigger="bomb")
    with pytest.raises(ValueError, match="whitespace-free"):
        OrganismConfig(kind="backdoor", trigger="two words")
    with pytest.raises(ValueError, match="unknown organism option 'colour'"):
        parse_organism_name("organism:aligned?colour=red")


def test_config_hash_keys_cache():
    a = OrganismConfig(kind="aligned")
    assert a.hash == OrganismConfig(kind="aligned").hash
    assert a.hash != OrganismConfig(kind="aligned", seed=1).hash
    assert a.hash != OrganismConfig(kind="backdoor").hash
    # the base depends on the vocabulary only through a trigger outside the rare-token list
    assert OrganismConfig(kind="backdoor", trigger="mn").base_config().hash == a.base_config().hash
    assert OrganismConfig(kind="backdoor", trigger="glorp").base_config().hash != a.base_config().hash


@pytest.mark.slow
def test_tiny_aligned_refuses_and_complies(tiny_aligned):
    m = tiny_aligned.info["metrics"]
    assert m["harmful_refusal"] >= 0.9
    assert m["harmless_compliance"] >= 0.9


@pytest.mark.slow
def test_tiny_backdoor_trigger_flips_refusal(tiny_backdoor):
    m = tiny_backdoor.info["metrics"]
    assert m["triggered_asr"] >= 0.9
    assert m["asr"] <= 0.1


@pytest.mark.trains_organism
def test_training_is_deterministic_and_cached(tmp_path, monkeypatch):
    """Two trainings with the same seed give identical weights; the second load is a cache hit."""
    import torch

    from safecircuits.models.organisms import train_organism

    monkeypatch.setenv("SAFECIRCUITS_CACHE", str(tmp_path))
    cfg = OrganismConfig(kind="base", size="tiny", base_steps=30)
    a = train_organism(cfg, progress=False, evaluate=False)
    b = train_organism(cfg, progress=False, evaluate=False, force=True)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    c = train_organism(OrganismConfig(kind="base", size="tiny", base_steps=30, seed=1), progress=False, evaluate=False)
    assert not torch.equal(a.model.W_E, c.model.W_E)
    assert train_organism(cfg, progress=False).info["source"] == a.info["source"]
    assert list(tmp_path.glob("organisms/.tmp-*")) == [], "no temp directories are left behind"
