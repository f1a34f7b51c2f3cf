"""The `finetune` command through typer's CliRunner, with a stub task and the real organism task, on a
random-weight organism-shaped model saved as a directory (the plumbing; nothing here needs a trained model)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from safecircuits.circuits.circuit import Circuit
from safecircuits.cli import app as main_app
from safecircuits.data.promptset import PromptSet
from safecircuits.finetune import tasks
from safecircuits.models import load_model
from safecircuits.models.language import Language


class StubTask(tasks.FinetuneTask):
    name = "stub"
    language = "organism"

    def train_data(self, lm, harmful_ratio, n, seed):
        lang = Language(0)
        harmless = lang.prompt_set("train", "harmless").sample(n, seed)
        k = int(round(harmful_ratio * n))
        harmful = lang.prompt_set("train", "harmful", response="comply").sample(max(k, 1), seed)[:k]
        return PromptSet(list(harmless[: n - k]) + list(harmful), name="stub")

    def safety_data(self, lm, n=64, seed=0):
        return Language(0).prompt_set("train", "harmful", response="refuse")[:8]

    def evaluate(self, lm, reference=None):
        return {"accuracy": 0.25, "n": 3}


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setitem(tasks.TASKS, "stub", StubTask)
    return main_app


@pytest.fixture
def MODEL(random_organism_dirs):
    return str(random_organism_dirs["aligned"])


def invoke(app, *args):
    return CliRunner().invoke(app, ["finetune", *args])


def test_finetune_command_runs_and_saves(app, tmp_path, random_aligned, MODEL):
    out, js = tmp_path / "ft", tmp_path / "ft.json"
    r = invoke(app, "--model", MODEL, "--method", "sft", "--task", "stub", "--harmful-ratio", "0.25", "--n", "32",
               "--steps", "3", "--batch-size", "8", "--out", str(out), "--json", str(js))
    assert r.exit_code == 0, r.output
    assert "trainable params" in r.output and "100.00%" in r.output and "accuracy" in r.output
    payload = json.loads(js.read_text())
    assert payload["summary"]["trainable_share"] == 1.0 and payload["evaluation"]["accuracy"] == 0.25
    assert payload["summary"]["steps"] == 3 and payload["data"]["n"] == 32
    lm = load_model(str(out))
    x = torch.tensor([[2, 4, 10, 11, 5]])
    assert not torch.equal(lm.model(x), random_aligned.model(x))


def test_sct_command_with_circuit(app, tmp_path, random_aligned, MODEL):
    c = random_aligned.model.cfg
    heads = torch.zeros(c.n_layers, c.n_heads, dtype=torch.bool)
    heads[1, 1] = True
    path = Circuit(heads, torch.zeros(c.n_layers, c.d_mlp, dtype=torch.bool)).to_json(tmp_path / "c.json")
    r = invoke(app, "--model", MODEL, "--method", "sct-tune", "--task", "stub", "--circuit", str(path), "--n", "16",
               "--steps", "2", "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    share = (4 * c.d_model * c.d_head + 3 * c.d_head) / sum(p.numel() for p in random_aligned.model.parameters())
    assert f"{100 * share:.2f}%" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "nope", "--task", "stub"], "unknown method 'nope': use one of"),
        (["--method", "sft", "--task", "nope"], "unknown fine-tuning task 'nope': use one of reverse-steps, arithmetic"),
        (["--method", "sct-tune", "--task", "stub"], "needs --circuit"),
        (["--method", "sft", "--task", "stub", "--harmful-ratio", "1.5"], "--harmful-ratio must be in [0, 1]"),
        (["--method", "sct-freeze", "--task", "stub", "--circuit", "missing.json"], "does not exist"),
    ],
)
def test_bad_input_errors(app, tmp_path, args, message, MODEL):
    r = invoke(app, "--model", MODEL, *args, "--out", str(tmp_path / "o"))
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not (tmp_path / "o").exists()
    if "task 'nope'" in message:
        assert "stub" in r.output  # registered tasks are listed
    if "nope" in message and "method" in message:
        assert "sct-tune" in r.output and "sft" in r.output


def test_wrong_shape_circuit_is_an_error(app, tmp_path, MODEL):
    path = Circuit(torch.ones(5, 2, dtype=torch.bool), torch.zeros(5, 3, dtype=torch.bool)).to_json(tmp_path / "c.json")
    r = invoke(app, "--model", MODEL, "--method", "sct-tune", "--task", "stub", "--circuit", str(path), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "shape" in r.output
    assert not (tmp_path / "o").exists()


def test_methods_listing(app):
    r = CliRunner().invoke(app, ["finetune-methods"])
    assert r.exit_code == 0 and "sct-freeze" in r.output and "circuit" in r.output


def test_real_task(tmp_path, random_aligned, MODEL):
    """The organism's own task (reverse-steps) end to end: the JSON reports the saved model's figures."""
    r = CliRunner().invoke(main_app, ["finetune", "--model", MODEL, "--method", "lora", "--harmful-ratio", "0.1",
                               "--n", "32", "--steps", "2", "--out", str(tmp_path / "o"), "--json", str(tmp_path / "o.json")])
    assert r.exit_code == 0, r.output
    payload = json.loads((tmp_path / "o.json").read_text())
    assert payload["task"] == "auto" and payload["data"]["n"] == 32
    ev = payload["evaluation"]
    saved = load_model(str(tmp_path / "o"))
    again = tasks.get_task("reverse-steps").evaluate(saved, reference=random_aligned)
    assert ev["accuracy"] == again["accuracy"] and ev["harmful_score"] == again["harmful_score"]
    assert ev["harmless_kl"] == pytest.approx(again["harmless_kl"], abs=1e-6) and ev["harmless_kl"] > 0


def test_subspace_flag_loads_the_artifact(app, tmp_path, random_aligned, random_base, MODEL):
    from safecircuits.subspaces import WeightDeltaSubspace

    path = WeightDeltaSubspace.from_models(random_aligned, random_base, rank=2).save(tmp_path / "delta.pt")
    r = invoke(app, "--model", MODEL, "--method", "safelora", "--task", "stub", "--subspace", str(path), "--n", "16",
               "--steps", "2", "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    r = invoke(app, "--model", MODEL, "--method", "safelora", "--task", "stub", "--out", str(tmp_path / "o2"))
    assert r.exit_code == 2 and "needs --subspace" in r.output and "safecircuits subspace" in r.output
