"""The harmful fine-tuning benchmark: runs, resume, aggregation, tables, figure and CLI (tiny organism)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

import safecircuits.finetune.loop as loop
from safecircuits.cli.bench import app as bench_app
from safecircuits.finetune.benchmark import (
    aggregate,
    base_name_for,
    markdown_table,
    merge_results,
    prepare_artifacts,
    run_benchmark,
    run_key,
)
from safecircuits.models import load_model
from safecircuits.viz.finetune import benchmark_figure, write_benchmark_html

MODEL = "organism:aligned?size=tiny"


def test_run_benchmark_writes_runs_and_resume_skips_them(tmp_path, monkeypatch, tiny_aligned):
    path = tmp_path / "bench.json"
    kw = dict(methods=["sft", "lora"], ratios=[0.0, 0.3], seeds=[0], steps=2, artifacts={}, json_path=path, n_train=16, progress=False)
    res = run_benchmark(MODEL, **kw)
    on_disk = json.loads(path.read_text())
    assert set(on_disk["runs"]) == {run_key(m, p, 0) for m in ("sft", "lora") for p in (0.0, 0.3)}
    for r in on_disk["runs"].values():
        assert 0 <= r["harmful_score"] <= 1 and 0 <= r["accuracy"] <= 1 and r["harmless_kl"] >= 0
        assert r["step_seconds"] > 0 and r["data"]["hash"]
    assert on_disk["runs"][run_key("lora", 0.3, 0)]["trainable_share"] < on_disk["runs"][run_key("sft", 0.3, 0)]["trainable_share"] == 1.0
    assert res["provenance"]["model"]["model"] == MODEL and on_disk["settings"]["steps"] == 2
    # the harmful share is what the data provenance says: p=0.3 of 16 -> 5 harmful records
    assert "p=0.3" in on_disk["runs"][run_key("sft", 0.3, 0)]["data"]["name"]

    calls = []
    real = loop.finetune
    monkeypatch.setattr(loop, "finetune", lambda *a, **k: calls.append(a[2].name) or real(*a, **k))
    res2 = run_benchmark(MODEL, **{**kw, "seeds": [0, 1]})  # only seed 1 is new
    assert sorted(calls) == ["lora", "lora", "sft", "sft"]
    assert len(res2["runs"]) == 8
    assert res2["runs"][run_key("sft", 0.0, 0)] == on_disk["runs"][run_key("sft", 0.0, 0)]  # untouched
    calls.clear()
    run_benchmark(MODEL, **{**kw, "seeds": [0, 1]})
    assert calls == []  # everything finished: nothing reruns
    with pytest.raises(ValueError, match="other settings"):
        run_benchmark(MODEL, **{**kw, "steps": 3})


def test_run_benchmark_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="ratio"):
        run_benchmark(MODEL, ["sft"], [1.5], [0], steps=1, artifacts={}, progress=False)
    with pytest.raises(ValueError, match="unknown fine-tuning methods"):
        run_benchmark(MODEL, ["magic"], [0.1], [0], steps=1, artifacts={}, progress=False)
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        run_benchmark(MODEL, ["sft"], [0.1], [0], steps=1, artifacts={}, json_path=bad, progress=False)
    from conftest import random_lm

    assert base_name_for(load_model(MODEL, progress=False)) == "organism:base?size=tiny"
    with pytest.raises(ValueError, match="base"):
        base_name_for(random_lm())


def test_prepare_artifacts_uses_a_given_circuit_and_leaves_the_cache_alone(tmp_path, tiny_aligned):
    from safecircuits.circuits.baselines import random_circuit

    c = random_circuit(tiny_aligned, "safety", n_heads=1, n_neurons=3, seed=0)
    arts = prepare_artifacts(tiny_aligned, ["sct-tune", "sct-freeze"], root=tmp_path, progress=False, circuit=c)
    assert set(arts) == {"circuit"} and arts["circuit"] is c  # sct needs only the circuit; no discovery ran
    assert not (tmp_path / "safety_circuit.json").exists()  # a caller's circuit never replaces the cached one
    assert prepare_artifacts(tiny_aligned, ["sft", "lora"], root=tmp_path, progress=False) == {}


def test_prepare_artifacts_for_a_chat_model_takes_base_and_prompts(tmp_path, tiny_aligned, tiny_base):
    """The chat-model path (as for SmolLM2): base given as a loaded model, the activation basis and
    the SAE from the caller's prompts (without them, from the model profile's train split)."""
    import dataclasses

    import torch

    from safecircuits.models.language import Language

    chat_lm = dataclasses.replace(tiny_aligned, name="chat-model", info={k: v for k, v in tiny_aligned.info.items() if k != "organism"})
    lang = Language(tiny_aligned.info["organism"]["split_seed"])
    harm, ok = lang.prompt_set("train", "harmful")[:24], lang.prompt_set("train", "harmless")[:24]
    arts = prepare_artifacts(chat_lm, ["cwac"], base=tiny_base, rank=2, sae_hook="blocks.0.hook_resid_post", sae_tokens=2000,
                             root=tmp_path, progress=False, prompts=(harm, ok), sae_kwargs={"d_sae": 32, "k": 4})
    assert set(arts) == {"subspace", "activation_subspace", "features"}
    b = arts["activation_subspace"]
    n_res = tiny_aligned.model.cfg.n_layers + 1
    assert b.shape[0] == tiny_aligned.model.cfg.d_model and 1 <= b.shape[1] <= 2 * n_res
    assert torch.allclose(b.T @ b, torch.eye(b.shape[1]), atol=1e-5)  # orthonormal
    assert arts["features"].hook == "blocks.0.hook_resid_post" and arts["features"].d_sae == 32
    assert arts["subspace"].rank == 2


def _fake_results():
    runs = {}
    for m, hs in (("sft", [1.0, 0.8, 0.9]), ("cwac", [0.0, 0.1, 0.2])):
        for p in (0.1, 0.3):
            for s, h in enumerate(hs):
                runs[run_key(m, p, s)] = {"method": m, "ratio": p, "seed": s, "harmful_score": h, "accuracy": 0.5 + 0.1 * s,
                                          "harmless_kl": 0.1, "harmless_refusal": 0.0, "trainable_share": 1.0, "wall_seconds": 2.0,
                                          "step_seconds": 0.1}
    return {"settings": {"model": "m", "task": "t", "steps": 1}, "runs": runs}


def test_aggregate_mean_and_std():
    agg = aggregate(_fake_results())
    row = next(r for r in agg if r["method"] == "sft" and r["ratio"] == 0.1)
    assert row["harmful_score"] == pytest.approx(0.9) and row["harmful_score_std"] == pytest.approx(0.1)
    assert row["accuracy"] == pytest.approx(0.6) and row["n_seeds"] == 3 and row["seeds"] == [0, 1, 2]
    assert [r["method"] for r in agg] == ["sft", "sft", "cwac", "cwac"]


def test_merge_results_unions_runs_of_one_benchmark(tmp_path):
    res = _fake_results()
    a = {**res, "format": "safecircuits-finetune-benchmark/1", "runs": {k: v for k, v in res["runs"].items() if v["method"] == "sft"}}
    b = {**a, "runs": {k: v for k, v in res["runs"].items() if v["method"] == "cwac"}}
    (tmp_path / "b.json").write_text(json.dumps(b))
    m = merge_results(a, tmp_path / "b.json")
    assert m["runs"] == res["runs"]
    assert m["aggregate"] == aggregate(res)
    with pytest.raises(ValueError, match="other settings"):
        merge_results(a, {**b, "settings": {**b["settings"], "steps": 2}})
    clash = {**b, "runs": {**b["runs"], run_key("sft", 0.1, 0): {**a["runs"][run_key("sft", 0.1, 0)], "harmful_score": 0.0}}}
    with pytest.raises(ValueError, match="different results"):
        merge_results(a, clash)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a fine-tuning benchmark file"):
        merge_results(tmp_path / "bad.json")


def test_markdown_and_figure(tmp_path):
    res = _fake_results()
    md = markdown_table(res)
    assert "| sft | 90.0 ± 10.0 | 90.0 ± 10.0 |" in md and "| cwac | 10.0 ± 10.0 |" in md and "p=0.3" in md
    fig = benchmark_figure(res)
    assert len(fig.data) == 4  # 2 methods x 2 panels
    assert {tr.xaxis for tr in fig.data} == {"x", "x2"}
    out = write_benchmark_html(res, tmp_path / "f.html")
    html = out.read_text()
    assert "plotly" in html.lower() and "<script src=" not in html  # self-contained
    with pytest.raises(ValueError, match="no finished runs"):
        benchmark_figure({"runs": {}})


def test_bench_cli(tmp_path):
    app = typer.Typer()
    app.add_typer(bench_app, name="bench")
    runner = CliRunner()
    js, md, html = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "b.html"
    r = runner.invoke(app, ["bench", "finetune", "--model", MODEL, "--methods", "sft", "--ratios", "0,0.2", "--seeds", "0",
                            "--steps", "2", "--json", str(js), "--md", str(md), "--html", str(html), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(js.read_text())["runs"]) == 2 and "| sft |" in md.read_text() and html.stat().st_size > 100_000
    r = runner.invoke(app, ["bench", "finetune", "--model", MODEL, "--methods", "sft", "--ratios", "1.5", "--seeds", "0",
                            "--steps", "2", "--json", str(tmp_path / "c.json"), "--no-progress"])
    assert r.exit_code == 2 and "ratio" in r.output
    r = runner.invoke(app, ["bench", "finetune", "--model", MODEL, "--ratios", "abc", "--json", str(tmp_path / "d.json")])
    assert r.exit_code == 2 and "not a valid float" in r.output
    # a second part with another ratio merges into one file
    js2 = tmp_path / "b2.json"
    r = runner.invoke(app, ["bench", "finetune", "--model", MODEL, "--methods", "lora", "--ratios", "0", "--seeds", "0",
                            "--steps", "2", "--json", str(js2), "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["bench", "merge", str(js), str(js2), "--json", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "m.json").read_text())["runs"]) == 3 and "| lora |" in r.output
    r = runner.invoke(app, ["bench", "merge", str(md), "--json", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and "cannot read a benchmark results file" in r.output
