import json

from typer.testing import CliRunner

from safecircuits.circuits.circuit import Circuit
from safecircuits.cli import app

runner = CliRunner()


def test_discover_then_ablate(tiny_backdoor, tmp_path):
    out = tmp_path / "c.json"
    r = runner.invoke(app, ["discover", "--model", "organism:backdoor?size=tiny", "--objective", "backdoor", "--max-steps", "6",
                            "--out", str(out), "--json", str(tmp_path / "m.json"), "--html", str(tmp_path / "map.html")])
    assert r.exit_code == 0, r.output
    c = Circuit.from_json(out)
    assert c.provenance["objective"] == "backdoor" and c.provenance["ablation"] == "mean"
    m = json.loads((tmp_path / "m.json").read_text())
    assert {"full", "remove", "random"} <= set(m["effect"])
    assert (tmp_path / "map.html").stat().st_size > 100_000
    r = runner.invoke(app, ["ablate", "--model", "organism:backdoor?size=tiny", "--circuit", str(out), "--n-random", "2",
                            "--limit", "10", "--json", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    assert "circuit removed" in r.output and "random (mean of 2)" in r.output
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["effect"]["full"]["triggered_asr"] >= 0.9


def test_ablate_shape_mismatch_is_a_clear_error(tiny_aligned, tmp_path):
    import torch

    c = Circuit(torch.zeros(5, 4, dtype=torch.bool), torch.zeros(5, 10, dtype=torch.bool), provenance={"model": "other"})
    c.to_json(tmp_path / "c.json")
    r = runner.invoke(app, ["ablate", "--model", "organism:aligned?size=tiny", "--circuit", str(tmp_path / "c.json")])
    assert r.exit_code == 2
    assert "n_layers" in r.output and "load the circuit onto the model it was found on" in r.output


def test_discover_bad_objective(tiny_aligned, tmp_path):
    r = runner.invoke(app, ["discover", "--model", "organism:aligned?size=tiny", "--objective", "honesty", "--out", str(tmp_path / "c.json")])
    assert r.exit_code == 2 and "unknown objective 'honesty'" in r.output
