"""Validation tuning: the default grids, the choice rule, and `bench tune` end to end (tiny organism)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

import safecircuits.finetune.loop as loop
from safecircuits.cli.bench import app as bench_app
from safecircuits.finetune.benchmark import DEFAULT_METHODS, BenchmarkConfig, BenchmarkRunner, run_key
from safecircuits.finetune.tuning import (
    GRID_POINTS,
    choose,
    grid_label,
    read_grid,
    tune,
    tune_config,
    tuned_config,
)

MODEL = "organism:aligned?size=tiny"


def test_default_grids_give_every_method_the_same_budget():
    grids, ref = read_grid("default", DEFAULT_METHODS)
    assert ref is None and set(grids) == set(DEFAULT_METHODS)
    assert {len(p) for p in grids.values()} == {GRID_POINTS} == {6}
    for m, points in grids.items():  # no point twice
        assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points), m
    cfg = tune_config(BenchmarkConfig(ratios=(0.1, 0.3), seeds=(0,), steps=60), grids)  # every point is a valid setting
    assert cfg.eval_split == "val" and cfg.steps == 60 and cfg.methods[0] == "lora" and len(cfg.methods) == 1 + 6 * len(DEFAULT_METHODS)
    assert cfg.base_method(grid_label("cwac", 3)) == "cwac"
    cwac = grids["cwac"]
    assert {p["lam"] for p in cwac} == {5.0, 20.0, 50.0}
    assert {p["basis"] for p in cwac} == {"activations", "weights"} and {p["mode"] for p in cwac} == {"full", "lora"}
    assert len({p["tau"] for p in grids["safelora"]}) == 6
    pact = grids["pact"][0]
    assert pact == {"lr": 3e-5, "lam": 1.0, "temperature": 2.0, "k": 50}  # the paper's setting comes first
    assert {p["lr"] for p in grids["pact"]} > {3e-5} and {p["lam"] for p in grids["pact"]} > {1.0}  # tuned from there


def test_grid_points_reach_the_loop(tiny_aligned):
    """PACT's paper point trains LoRA r=8 on W_Q/W_V at lr 3e-5; a CWAC point in LoRA mode trains LoRA at lora_lr."""
    grids, _ = read_grid("default", ["pact", "cwac"])
    cfg = tune_config(BenchmarkConfig(ratios=(0.1,), seeds=(0,)), grids, run_reference=False)
    runner = BenchmarkRunner(tiny_aligned, cfg, artifacts={})
    method, fc = runner.finetune_config(grid_label("pact", 0), seed=0)
    assert (method.name, fc.lr, fc.lora_rank, fc.lora_targets) == ("pact", 3e-5, 8, ("W_Q", "W_V"))
    assert method.hparams["k"] == 50 and method.hparams["lam"] == 1.0 and method.hparams["temperature"] == 2.0
    i = next(i for i, p in enumerate(grids["cwac"]) if p["mode"] == "lora")
    method, fc = runner.finetune_config(grid_label("cwac", i), seed=0)
    assert fc.mode == "lora" and fc.lr == cfg.lora_lr and method.hparams["lam"] == grids["cwac"][i]["lam"]


def _fake(points: dict[str, tuple[float, float]], ref_acc: float = 0.8) -> dict:
    """Tuning results: {label: (harmful, accuracy)} over two ratios, plus lora runs at `ref_acc`."""
    runs = {}
    for label, (h, a) in {**points, "lora": (0.9, ref_acc)}.items():
        for p in (0.1, 0.3):
            runs[run_key(label, p, 0)] = {"method": label, "ratio": p, "seed": 0, "harmful_score": h, "accuracy": a}
    return {"settings": {"lr": 1e-3, "lora_lr": 4e-3}, "runs": runs}


def test_choose_keeps_the_safest_point_that_learns_like_lora():
    grids = {"sft": [{"lr_scale": 1.0}, {"lr_scale": 0.1}, {"lr": 0.02}], "lora": [{"lr_scale": 0.5}]}
    res = _fake({"sft@0": (0.5, 0.79), "sft@1": (0.0, 0.70), "sft@2": (0.2, 0.77), "lora@0": (0.3, 0.8)})
    c = choose(res, grids)
    assert c["reference"]["accuracy"] == 0.8 and c["reference"]["source"].startswith("lora")
    sft = c["methods"]["sft"]
    assert sft["chosen"] == "sft@2" and sft["qualified"] and sft["hparams"] == {"lr": 0.02}  # 0.77 is within 3 points of 0.80
    assert [r["qualified"] for r in sft["points"]] == [True, False, True]
    assert choose(res, grids, tolerance=0.1)["methods"]["sft"]["chosen"] == "sft@1"  # 0.70 qualifies with 10 points
    assert c["methods"]["lora"]["hparams"] == {"lr": pytest.approx(2e-3)}  # lr_scale resolved on lora_lr
    assert choose(res, grids)["methods"]["sft"]["points"][1]["hparams"] == {"lr": pytest.approx(1e-4)}
    # a reference accuracy from the grid file; nothing qualifies -> the most accurate point, flagged
    c2 = choose(res, grids, reference_accuracy=0.95)
    assert c2["methods"]["sft"]["chosen"] == "sft@0" and not c2["methods"]["sft"]["qualified"]
    assert c2["reference"]["source"] == "grid file"
    # ties in harm go to the more accurate point
    res3 = _fake({"sft@0": (0.1, 0.78), "sft@1": (0.1, 0.79), "sft@2": (0.4, 0.9), "lora@0": (0.0, 0.1)})
    assert choose(res3, grids)["methods"]["sft"]["chosen"] == "sft@1"
    with pytest.raises(ValueError, match="no finished runs"):
        choose({**res, "runs": {k: v for k, v in res["runs"].items() if v["method"] != "sft@2"}}, grids)


def test_read_grid_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="no default grid"):
        read_grid("default", ["sft@x"])
    g = tmp_path / "g.json"
    g.write_text(json.dumps({"sft": [{"lr_scale": 2.0}], "reference_accuracy": 0.5}))
    assert read_grid(g, ["sft"]) == ({"sft": [{"lr_scale": 2.0}]}, 0.5)
    with pytest.raises(ValueError, match="no grid for 'lora'"):
        read_grid(g, ["lora"])
    for bad, match in [({"sft": []}, "non-empty list"), ({"sft": [{"method": "lora"}]}, "must not set 'method'"),
                       ({"sft": [{}], "reference_accuracy": 3}, "reference_accuracy")]:
        with pytest.raises(ValueError, match=match):
            read_grid(bad, ["sft"])


def test_bench_tune_writes_a_config_that_bench_finetune_takes(tmp_path, monkeypatch):
    app = typer.Typer()
    app.add_typer(bench_app, name="bench")
    grid, js, out = tmp_path / "grid.json", tmp_path / "tune.json", tmp_path / "cfg.json"
    grid.write_text(json.dumps({"sft": [{"lr_scale": 0.5}, {"lr": 0.05}]}))
    args = ["bench", "tune", "--model", MODEL, "--method", "sft", "--grid", str(grid), "--json", str(js), "--config-out", str(out),
            "--steps", "2", "--n-train", "16", "--eval-limit", "6", "--no-progress"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    d = json.loads(js.read_text())
    assert len(d["runs"]) == 3 * 2  # lora + 2 points, at p = 0.1 and 0.3, seed 0
    assert {x["eval"]["split"] for x in d["runs"].values()} == {"val"} and d["settings"]["eval_split"] == "val"
    chosen = d["tune"]["methods"]["sft"]
    cfg = json.loads(out.read_text())
    assert cfg["method_hparams"]["sft"] == chosen["hparams"] and cfg["steps"] == 2 and cfg["n_train"] == 16
    assert cfg["tuned_on"]["ratios"] == [0.1, 0.3] and cfg["tuned_on"]["choices"]["sft"]["chosen"] == chosen["chosen"]
    assert "sft@0" in r.output and "**chosen**" in r.output
    best = min((p for p in chosen["points"] if p["qualified"]), key=lambda p: (p["val_harmful_score"], -p["val_accuracy"]))
    assert chosen["chosen"] == best["label"]
    # the config runs in the benchmark with the chosen learning rate
    bj = tmp_path / "bench.json"
    r = CliRunner().invoke(app, ["bench", "finetune", "--model", MODEL, "--methods", "sft", "--ratios", "0.3", "--seeds", "0",
                                 "--config", str(out), "--eval-limit", "6", "--json", str(bj), "--no-progress"])
    assert r.exit_code == 0, r.output
    run = json.loads(bj.read_text())["runs"][run_key("sft", 0.3, 0)]
    assert run["lr"] == chosen["hparams"]["lr"] and json.loads(bj.read_text())["settings"]["steps"] == 2
    # a rerun resumes: nothing trains again
    calls = []
    real = loop.finetune
    monkeypatch.setattr(loop, "finetune", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert CliRunner().invoke(app, args).exit_code == 0 and calls == []


def test_tune_takes_the_reference_accuracy_from_the_grid(tmp_path, tiny_aligned):
    res = tune(tiny_aligned, ["lora"], grid={"lora": [{"lr_scale": 1.0}, {"lora_rank": 2}], "reference_accuracy": 0.0},
               config=BenchmarkConfig(ratios=(0.3,), seeds=(0,), steps=2, n_train=16, eval_limit=4), artifacts={},
               config_out=tmp_path / "c.json", progress=False)
    assert {r["method"] for r in res["runs"].values()} == {"lora@0", "lora@1"}  # the reference did not run
    assert res["tune"]["reference"] == {"method": "lora", "accuracy": 0.0, "source": "grid file"}
    assert tuned_config(res)["method_hparams"]["lora"] == json.loads((tmp_path / "c.json").read_text())["method_hparams"]["lora"]
    with pytest.raises(ValueError, match="no tuning choice"):
        tuned_config({"settings": {}})
