"""benchmarks/align_smollm2.py: which recorded test figures still belong to the chosen model."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "align_smollm2.py"
    spec = importlib.util.spec_from_file_location("align_smollm2", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_rebuild_with_other_weights_is_measured_again():
    current = _module()._test_is_current
    cfg = {"lr": 1e-4, "steps": 560}
    assert current({"config": cfg, "fingerprint": "aaaa"}, cfg, "aaaa")
    assert not current({"config": cfg, "fingerprint": "aaaa"}, cfg, "bbbb")  # same config, other weights
    assert not current({"config": {**cfg, "steps": 480}, "fingerprint": "aaaa"}, cfg, "aaaa")
    assert not current({}, cfg, "aaaa")  # nothing measured yet
    assert current({"config": cfg}, cfg, "aaaa")  # an old record without a fingerprint is trusted
