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


def test_figures_of_added_val_sets_merge_into_a_run():
    merge = benchmark_module("align_smollm2")._merge
    old = {"asr": 0.02, "n": {"harmful": 100}, "hashes": {"harmful": "h1"}, "examples": {"harmful": []},
           "refusal_prob": {"harmful": 0.9}, "soft_asr": 0.1}
    new = {"asr_detailed": 0.1, "n": {"harmful_detailed": 60}, "hashes": {"harmful_detailed": "h2"},
           "examples": {"harmful_detailed": []}, "refusal_prob": {"harmful_detailed": 0.7}, "model": "m"}
    out = merge(old, new)
    assert out["asr"] == 0.02 and out["asr_detailed"] == 0.1 and out["soft_asr"] == 0.1
    assert out["n"] == {"harmful": 100, "harmful_detailed": 60} and out["hashes"] == {"harmful": "h1", "harmful_detailed": "h2"}
    assert out["refusal_prob"] == {"harmful": 0.9, "harmful_detailed": 0.7}
