"""benchmarks/align_smollm2.py: which recorded test figures still belong to the chosen model."""

from __future__ import annotations

from conftest import benchmark_module


def test_a_rebuild_with_other_weights_is_measured_again():
    current = benchmark_module("align_smollm2")._test_is_current
    cfg = {"lr": 1e-4, "steps": 560}
    assert current({"config": cfg, "fingerprint": "aaaa"}, cfg, "aaaa")
    assert not current({"config": cfg, "fingerprint": "aaaa"}, cfg, "bbbb")  # same config, other weights
    assert not current({"config": {**cfg, "steps": 480}, "fingerprint": "aaaa"}, cfg, "aaaa")
    assert not current({}, cfg, "aaaa")  # nothing measured yet
    assert current({"config": cfg}, cfg, "aaaa")  # an old record without a fingerprint is trusted
