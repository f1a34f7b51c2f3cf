"""benchmarks/sae_first_token.py end to end on organism:aligned with a tiny budget (slow): the sink
statistics, both SAEs over both token domains, and resuming without recomputation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import benchmark_module

pytestmark = pytest.mark.slow


def _run(mod, monkeypatch, out: Path) -> dict:
    argv = ["sae_first_token.py", "--json", str(out), "--model", "organism:aligned", "--device", "cpu", "--hook",
            "blocks.1.hook_resid_pre", "--tokens", "20000", "--d-sae", "128", "--k", "8"]
    monkeypatch.setattr(sys, "argv", argv)
    mod.main()
    return json.loads(out.read_text())


def test_sae_first_token_benchmark_on_organism(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAFECIRCUITS_CACHE", str(tmp_path / "cache"))
    mod = benchmark_module("sae_first_token")
    out = tmp_path / "sae_first_token.json"
    res = _run(mod, monkeypatch, out)

    n = res["norms"]
    assert n["n_first"] > 0 and n["n_other"] > n["n_first"]
    assert 0 < n["first_token_variance_share"] < 1
    assert n["other_norm_median"] <= n["other_norm_p99"] <= n["other_norm_max"]

    a, b = res["all_tokens"], res["no_first_token"]
    assert a["exclude_first_token"] is False and b["exclude_first_token"] is True
    assert b["settings"]["exclude_first_token"] is True
    # the SAE without the first token was trained on exactly one token fewer per sequence
    from safecircuits.models import load_model

    n_train = len(load_model("organism:aligned", device="cpu").profile.sae_prompts("train"))
    assert a["buffer_tokens"] - b["buffer_tokens"] == n_train
    assert set(a["quality"]) == {"all_tokens", "no_first_token"} and set(b["quality"]) == {"no_first_token"}
    q_all, q_nf = a["quality"]["all_tokens"], a["quality"]["no_first_token"]
    assert q_all["n_tokens"] - q_nf["n_tokens"] == n["n_first"]  # one first token per val sequence
    assert b["quality"]["no_first_token"]["n_tokens"] == q_nf["n_tokens"]  # both SAEs measured on the same tokens
    for q in (q_all, q_nf, b["quality"]["no_first_token"]):
        assert q["l0"] == pytest.approx(8.0)  # top-k on either domain
        assert 0 < q["explained_variance"] <= 1
    assert all((Path(r["dir"]) / "cfg.json").exists() for r in (a, b))

    # resuming keeps every finished part as it was
    capsys.readouterr()
    again = _run(mod, monkeypatch, out)
    assert capsys.readouterr().out.count("done, kept") == 3
    assert {k: again[k] for k in ("norms", "all_tokens", "no_first_token")} == {k: res[k] for k in ("norms", "all_tokens", "no_first_token")}
