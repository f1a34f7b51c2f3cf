"""benchmarks/smollm2_circuits.py: backdoors of other settings never share a JSON key, a cached
model or a circuit section."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import benchmark_module


@pytest.fixture
def script(monkeypatch, tmp_path):
    monkeypatch.setenv("SAFECIRCUITS_CACHE", str(tmp_path))
    mod = benchmark_module("smollm2_circuits")
    mod.SUFFIX = "-1234abcd"

    def configure(kl: float = 0.0, all_answers: bool = False):
        mod.ARGS = SimpleNamespace(backdoor_steps=400, backdoor_n=256, backdoor_kl=kl, backdoor_all_answers=all_answers,
                                   json=tmp_path / "r.json", max_steps=1)
        return mod._backdoor_config(0, "cf")

    return mod, configure


def test_backdoor_settings_get_their_own_key_and_model(script):
    mod, configure = script
    cfgs = [configure(), configure(kl=1.0), configure(all_answers=True), configure(kl=1.0, all_answers=True)]
    keys = [mod._backdoor_key(c) for c in cfgs]
    dirs = [mod._backdoor_dir(c) for c in cfgs]
    assert keys == ["seed=0,trigger=cf", "seed=0,trigger=cf,harmless_kl=1", "seed=0,trigger=cf,all_answers",
                    "seed=0,trigger=cf,harmless_kl=1,all_answers"]
    assert len(set(dirs)) == 4 and all(d.name.endswith("-1234abcd") for d in dirs)
    assert cfgs[2].steps == 400 and not cfgs[2].compliant_only and cfgs[1].harmless_kl == 1.0


def test_a_json_holds_the_circuit_of_one_model(script):
    mod, configure = script
    res = {"backdoor_circuit": {"runs": {}, "of": "seed=0,trigger=cf,all_answers"}}
    configure()
    with pytest.raises(SystemExit, match="holds the backdoor_circuit of seed=0,trigger=cf,all_answers"):
        mod._circuit_stage(res, "backdoor_circuit", None, "backdoor", [0], 1, 1, of="seed=0,trigger=cf")
