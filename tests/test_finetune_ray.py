"""The Ray executor: a local Ray cluster with 2 workers gives the local executor's figures, resumes
from the results file and keeps finished runs when another fails (tiny organism, 2 steps)."""

from __future__ import annotations

import json

import pytest

from safecircuits.finetune.benchmark import START, BenchmarkConfig, merge_results, run_benchmark, run_key

ray = pytest.importorskip("ray", reason="the Ray executor is optional: pip install ray  (or pip install 'safecircuits[scale]')")

MODEL = "organism:aligned?size=tiny"
EXACT = ("harmful_score", "accuracy", "harmless_refusal", "task_refusal", "harmful_refusal", "trainable_share", "lr", "mode")
CLOSE = ("harmless_kl", "task_kl", "final_loss")


@pytest.fixture(scope="module")
def ray_cluster():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    yield
    ray.shutdown()


def _same_figures(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        ra, rb = a[k], b[k]
        for m in EXACT:
            assert ra[m] == rb[m], (k, m)
        for m in CLOSE:
            assert ra[m] == pytest.approx(rb[m], rel=1e-5, abs=1e-7), (k, m)
        assert ra["data"]["hash"] == rb["data"]["hash"]
        for h in ("task_hash", "harmful_hash", "harmless_hash"):
            assert ra["eval"][h] == rb["eval"][h]


def test_ray_executor_matches_local_and_resumes(tmp_path, ray_cluster, tiny_aligned):
    cfg = BenchmarkConfig(methods=("sft", "lora"), ratios=(0.3,), seeds=(0,), steps=2, n_train=16, eval_limit=8)
    local = run_benchmark(MODEL, cfg, artifacts={}, progress=False)

    # the same JSON holds one finished run; the Ray call runs only the other and writes it there
    path = tmp_path / "bench.json"
    run_benchmark(MODEL, cfg.replace(methods=("sft",)), artifacts={}, json_path=path, progress=False)
    d = json.loads(path.read_text())
    first = d["runs"][run_key("sft", 0.3, 0)]
    del d[START]  # so that the Ray call evaluates the model before fine-tuning in a worker
    path.write_text(json.dumps(d))
    res = run_benchmark(MODEL, cfg.replace(executor="ray"), artifacts=None, json_path=path, progress=False)
    on_disk = json.loads(path.read_text())
    assert on_disk["runs"][run_key("sft", 0.3, 0)] == first  # skipped, not rerun
    assert res["provenance"]["executor"]["kind"] == "ray" and res["provenance"]["executor"]["num_gpus"] == 0
    assert on_disk["runs"][run_key("lora", 0.3, 0)]["host"]["device"] == "cpu"
    assert res["settings"] == local["settings"] == on_disk["settings"]
    _same_figures(on_disk["runs"], local["runs"])
    for m in ("harmful_score", "accuracy", "harmless_refusal", "task_refusal"):
        assert on_disk[START][m] == local[START][m]
    merged = merge_results(on_disk)
    for ra, rb in zip(merged["aggregate"], local["aggregate"], strict=True):
        assert (ra["method"], ra["ratio"], ra["seeds"]) == (rb["method"], rb["ratio"], rb["seeds"])
        for m in ("harmful_score", "accuracy", "harmless_refusal", "task_refusal"):
            assert ra[m] == rb[m] and ra["values"][m] == rb["values"][m]
        assert ra["harmless_kl"] == pytest.approx(rb["harmless_kl"], rel=1e-5, abs=1e-7)

    # the command line: --executor ray --address auto joins the running Ray instance
    import typer
    from typer.testing import CliRunner

    from safecircuits.cli.bench import app as bench_app

    app = typer.Typer()
    app.add_typer(bench_app, name="bench")
    js = tmp_path / "cli.json"
    r = CliRunner().invoke(app, ["bench", "finetune", "--model", MODEL, "--methods", "lora", "--ratios", "0.3", "--seeds", "0", "--steps", "2",
                                 "--n-train", "16", "--eval-limit", "8", "--executor", "ray", "--address", "auto", "--json", str(js),
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    cli = json.loads(js.read_text())
    assert cli["provenance"]["executor"]["kind"] == "ray"
    _same_figures(cli["runs"], {k: v for k, v in local["runs"].items() if v["method"] == "lora"})

    # a failing run (safelora without its subspace) does not lose the others: they are written, then the error is raised
    path2 = tmp_path / "fail.json"
    with pytest.raises(ValueError, match="subspace"):
        run_benchmark(MODEL, cfg.replace(methods=("safelora", "sft"), executor="ray"), artifacts={}, json_path=path2, progress=False)
    assert set(json.loads(path2.read_text())["runs"]) == {run_key("sft", 0.3, 0)}
