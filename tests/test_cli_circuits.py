"""`discover` and `ablate` through the CLI (random-weight organism-shaped models: the plumbing;
what the circuits do is checked on trained organisms in test_circuit_eval.py / test_circuit_figures.py)."""

import json

import pytest
from typer.testing import CliRunner

from safecircuits.circuits.circuit import Circuit
from safecircuits.cli import app

runner = CliRunner()


def test_discover_then_ablate(random_organism_dirs, tmp_path, monkeypatch):
    import functools

    from safecircuits.circuits import recipes

    # the effect table `discover --json` prints: on 10 prompts per label and 2 random circuits (plumbing, not figures)
    monkeypatch.setattr(recipes, "effect_table", functools.partial(recipes.effect_table, limit=10, n_random=2))
    model = str(random_organism_dirs["backdoor"])
    out = tmp_path / "c.json"
    r = runner.invoke(app, ["discover", "--model", model, "--objective", "backdoor", "--max-steps", "6",
                            "--out", str(out), "--json", str(tmp_path / "m.json"), "--html", str(tmp_path / "map.html")])
    assert r.exit_code == 0, r.output
    c = Circuit.from_json(out)
    assert c.provenance["objective"] == "backdoor" and c.provenance["ablation"] == "mean"
    assert c.shape == {"n_layers": 2, "n_heads": 4, "d_mlp": 128}
    m = json.loads((tmp_path / "m.json").read_text())
    assert {"full", "remove", "random"} <= set(m["effect"])
    assert m["n_heads"] == c.n_heads and m["n_neurons"] == c.n_neurons and m["components"] == c.component_names()
    assert (tmp_path / "map.html").stat().st_size > 100_000
    r = runner.invoke(app, ["ablate", "--model", model, "--circuit", str(out), "--n-random", "2",
                            "--limit", "10", "--json", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    assert "circuit removed" in r.output and "random (mean of 2)" in r.output
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["ablation"] == "mean" and a["mode"] == "remove" and a["circuit"] == str(out)
    assert {"asr", "triggered_asr"} <= set(a["effect"]["full"])


@pytest.mark.parametrize("ranking", ["attribution", "selective"])
def test_discover_grow(random_organism_dirs, tmp_path, ranking):
    """`discover --grow` grows the found circuit on val along attribution patching's ranking (or
    the selective one) and saves the grown circuit with the record of every size tried (plumbing:
    random weights); with --grow-max-ce each size records the CE rise of the model's own answers."""
    out = tmp_path / "c.json"
    extra = ["--grow-max-ce", "0.5"] if ranking == "attribution" else []
    r = runner.invoke(app, ["discover", "--model", str(random_organism_dirs["backdoor"]), "--objective", "backdoor",
                            "--max-steps", "4", "--out", str(out), "--grow", "--grow-max-share", "0.05", "--grow-ranking", ranking,
                            *extra])
    assert r.exit_code == 0, r.output
    assert "grown from" in r.output and "triggered_asr by size" in r.output
    c = Circuit.from_json(out)
    rec = c.provenance["grown"]
    method = {"attribution": "attribution_patching", "selective": "attribution_patching-selective"}[ranking]
    assert rec["ranking"] == method and rec["metric"] == "triggered_asr" and rec["prompts"]["name"].endswith(":val")
    assert 1 <= len(rec["steps"]) and all(s["size"] <= 0.05 * c.total_components for s in rec["steps"])
    assert c.n_components == rec["size"]
    if extra:
        assert rec["max_ce_increase"] == 0.5 and rec["harmless_ce_full"] > 0
        assert all("ce_increase" in s for s in rec["steps"]) and all(s["ce_increase"] <= 0.5 for s in rec["steps"][:-1])


def test_ablate_shape_mismatch_is_a_clear_error(random_organism_dirs, tmp_path):
    import torch

    c = Circuit(torch.zeros(5, 4, dtype=torch.bool), torch.zeros(5, 10, dtype=torch.bool), provenance={"model": "other"})
    c.to_json(tmp_path / "c.json")
    r = runner.invoke(app, ["ablate", "--model", str(random_organism_dirs["aligned"]), "--circuit", str(tmp_path / "c.json")])
    assert r.exit_code == 2
    assert "n_layers" in r.output and "load the circuit onto the model it was found on" in r.output


def test_discover_bad_objective(random_organism_dirs, tmp_path):
    r = runner.invoke(app, ["discover", "--model", str(random_organism_dirs["aligned"]), "--objective", "honesty",
                            "--out", str(tmp_path / "c.json")])
    assert r.exit_code == 2 and "unknown objective 'honesty'" in r.output
    assert not (tmp_path / "c.json").exists()
