"""``safecircuits demo --model``: the SafeSeek chain on SmolLM2 at the smoke budget (slow), and its bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from safecircuits.cli import app
from safecircuits.errors import ModelNotAvailableError

runner = CliRunner()


def test_bad_input_names_the_fix(tmp_path):
    r = runner.invoke(app, ["demo", "--model", "organism:aligned", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "without --model" in r.output
    r = runner.invoke(app, ["demo", "--model", "smollm2-135m-instruct", "--budget", "huge", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "smoke, cpu, full" in r.output


@pytest.mark.slow
def test_smoke_chain_runs_and_resumes(tmp_path):
    from safecircuits.models import load_model

    try:
        load_model("smollm2-135m-instruct", progress=False)
    except ModelNotAvailableError as e:  # offline with no cached wheel
        pytest.skip(str(e))
    out = tmp_path / "demo"
    args = ["demo", "--model", "smollm2-135m-instruct", "--budget", "smoke", "--trigger", "zx", "--out", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    state = json.loads((out / "demo_real.json").read_text())
    for key in ("alignment", "backdoor", "backdoor_circuit", "safety_circuit"):
        assert key in state, key
    assert 0 <= state["alignment"]["aligned"]["asr"] <= 1 and "harmless_kl" in state["alignment"]["aligned"]
    assert "triggered_asr" in state["backdoor"]  # the backdoored model knows its trigger
    assert load_model(str(out / "models" / "backdoor-zx"), progress=False).profile.trigger == "zx"
    for key in ("backdoor_circuit", "safety_circuit"):
        conds = state[key]["effect"]["conditions"]
        assert set(conds) == {"full", "removed", "random"}, conds
        # three mask steps from the all-ones start remove nothing yet, and validation must say so
        assert state[key]["n_heads"] + state[key]["n_neurons"] == 0
        assert state[key]["validation"]["validated"] is False and state[key]["validation"]["reason"]
    assert "triggered_asr" in state["backdoor_circuit"]["effect"]["conditions"]["removed"]
    html = (out / "circuit_map.html").read_text()
    assert "backdoor" in html and "safety" in html and (out / "index.html").exists()
    # a rerun resumes: nothing is retrained or re-measured
    stamp = (out / "models" / "aligned" / "config.json").stat().st_mtime
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (out / "models" / "aligned" / "config.json").stat().st_mtime == stamp
    assert json.loads((out / "demo_real.json").read_text())["seconds"] == state["seconds"]
