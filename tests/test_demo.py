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
    assert "circuit removed" in r.output
