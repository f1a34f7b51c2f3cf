"""`safecircuits demo` end to end on tiny organisms (slow)."""

import json

import pytest
from typer.testing import CliRunner

from safecircuits.cli import app

pytestmark = pytest.mark.slow


def test_demo_tiny(tmp_path):
    r = CliRunner().invoke(app, ["demo", "--size", "tiny", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "demo.json").read_text())
    assert set(d["organisms"]) == {"base", "aligned", "backdoor"}
    assert d["organisms"]["backdoor"]["triggered_asr"] >= 0.9
    assert set(d["circuits"]) == {"backdoor", "safety"}
    assert (tmp_path / "circuit_map.html").stat().st_size > 100_000
    index = (tmp_path / "index.html").read_text()  # links every page the demo wrote
    assert all(f'href="{p}"' in index for p in ("circuit_map.html", "feature_dashboard.html", "subspace_geometry.html", "finetune_bench.html"))
    assert "circuit removed" in r.output
    # the closing harmful fine-tuning comparison: sft vs SCT vs CWAC at p = 0.1
    ft = d["finetune"]
    assert ft["ratio"] == 0.1 and set(ft["methods"]) == {"sft", "sct-freeze", "sct-tune", "cwac"}
    from safecircuits.finetune.benchmark import run_key

    bench = json.loads((tmp_path / "finetune_bench.json").read_text())
    for m, v in ft["methods"].items():  # the demo reports the benchmark's own runs
        run = bench["runs"][run_key(m, 0.1, 0)]
        assert (v["harmful_score"], v["accuracy"], v["trainable_share"]) == (run["harmful_score"], run["accuracy"], run["trainable_share"])
    assert ft["methods"]["sct-tune"]["trainable_share"] < ft["methods"]["sft"]["trainable_share"] == 1.0
    assert (tmp_path / "finetune_bench.json").exists() and (tmp_path / "finetune_bench.html").exists()
    assert "harmful fine-tuning" in r.output
