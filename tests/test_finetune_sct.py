"""Safety Circuit Tuning: circuit parameter masks, sct-freeze and sct-tune on a hand-made circuit (random-weight organism-shaped model)."""

from __future__ import annotations

import pytest
import torch

from safecircuits.circuits.circuit import Circuit
from safecircuits.finetune import FinetuneConfig, circuit_param_masks, finetune, get_method
from safecircuits.models.language import Language


@pytest.fixture(scope="module")
def circuit(random_aligned):
    c = random_aligned.model.cfg
    heads = torch.zeros(c.n_layers, c.n_heads, dtype=torch.bool)
    neurons = torch.zeros(c.n_layers, c.d_mlp, dtype=torch.bool)
    heads[0, 2] = True
    heads[1, 0] = True
    neurons[1, [3, 17, 90]] = True
    scores_h = heads.float() + 0.1 * torch.arange(c.n_heads).float()
    scores_n = neurons.float()
    return Circuit(heads, neurons, scores_h, scores_n, provenance={"model": random_aligned.name, "objective": "hand-made"})


@pytest.fixture(scope="module")
def data():
    lang = Language(0)
    return lang.prompt_set("train", "harmless") + lang.prompt_set("train", "harmful", response="comply")


def params(lm):
    return {n: p.detach().clone() for n, p in lm.model.named_parameters()}


def cfg(**kw):
    return FinetuneConfig(**{"steps": 5, "batch_size": 8, "lr": 3e-3, "progress": False, **kw})


def test_masks_select_head_and_neuron_slices(random_aligned, circuit):
    masks = circuit_param_masks(random_aligned.model, circuit)
    assert set(masks) == {f"blocks.{l}.attn.{w}" for l in (0, 1) for w in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")} | {
        "blocks.1.mlp.W_in", "blocks.1.mlp.b_in", "blocks.1.mlp.W_out"}
    wq = masks["blocks.0.attn.W_Q"]
    assert wq[2].all() and wq.sum() == wq[2].numel()
    w_in = masks["blocks.1.mlp.W_in"]
    assert w_in[:, [3, 17, 90]].all() and w_in.sum() == 3 * w_in.shape[0]
    assert masks["blocks.1.mlp.W_out"][[3, 17, 90]].all() and masks["blocks.1.mlp.b_in"].sum() == 3
    cfg_ = random_aligned.model.cfg
    per_head = 4 * cfg_.d_model * cfg_.d_head + 3 * cfg_.d_head
    per_neuron = 2 * cfg_.d_model + 1
    assert sum(int(m.sum()) for m in masks.values()) == 2 * per_head + 3 * per_neuron


def test_sct_freeze_spares_circuit(random_aligned, circuit, data):
    before = params(random_aligned)
    run = finetune(random_aligned, data, get_method("sct-freeze"), cfg(weight_decay=0.1), artifacts={"circuit": circuit})
    after = params(run.lm)
    masks = circuit_param_masks(random_aligned.model, circuit)
    for n, m in masks.items():
        m = m.bool()
        assert torch.equal(after[n][m], before[n][m]), f"{n}: a circuit entry moved under sct-freeze"
        assert not torch.equal(after[n][~m], before[n][~m]), f"{n}: non-circuit entries did not train"
    assert not torch.equal(after["unembed.W_U"], before["unembed.W_U"])
    total = sum(p.numel() for p in random_aligned.model.parameters())
    n_circ = sum(int(m.sum()) for m in masks.values())
    assert run.provenance["trainable_params"] == total - n_circ
    assert run.trainable_share == pytest.approx(1 - n_circ / total)


def test_sct_tune_changes_only_circuit(random_aligned, circuit, data):
    before = params(random_aligned)
    safety = Language(0).prompt_set("train", "harmful")  # refusal targets
    run = finetune(random_aligned, safety + data.filter(label="harmless"), get_method("sct-tune"), cfg(weight_decay=0.1),
                   artifacts={"circuit": circuit})
    after = params(run.lm)
    masks = circuit_param_masks(random_aligned.model, circuit)
    for n in before:
        if n in masks:
            m = masks[n].bool()
            assert torch.equal(after[n][~m], before[n][~m]), f"{n}: a non-circuit entry moved under sct-tune"
            assert not torch.equal(after[n][m], before[n][m]), f"{n}: circuit entries did not train"
        else:
            assert torch.equal(after[n], before[n]), f"{n}: no circuit entries, yet it moved"
    n_circ = sum(int(m.sum()) for m in masks.values())
    assert run.provenance["trainable_params"] == n_circ
    assert run.trainable_share == pytest.approx(n_circ / sum(p.numel() for p in random_aligned.model.parameters()))
    assert run.provenance["artifacts"]["circuit"]["provenance"]["objective"] == "hand-made"


def test_sct_top_k_and_circuit_path(random_aligned, circuit, data, tmp_path):
    path = circuit.to_json(tmp_path / "c.json")
    run = finetune(random_aligned, data, get_method("sct-tune", top_k=(1, 0)), cfg(steps=2), artifacts={"circuit": path})
    cfg_ = random_aligned.model.cfg
    assert run.provenance["trainable_params"] == 4 * cfg_.d_model * cfg_.d_head + 3 * cfg_.d_head  # the top-scoring head only
    assert run.provenance["method"]["top_k"] == [1, 0]


def test_sct_rejects_wrong_shape_and_lora(random_aligned, data):
    bad = Circuit(torch.zeros(3, 4, dtype=torch.bool), torch.ones(3, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        finetune(random_aligned, data, get_method("sct-tune"), cfg(), artifacts={"circuit": bad})
    c = random_aligned.model.cfg
    empty = Circuit(torch.zeros(c.n_layers, c.n_heads, dtype=torch.bool), torch.zeros(c.n_layers, c.d_mlp, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty"):
        finetune(random_aligned, data, get_method("sct-tune"), cfg(), artifacts={"circuit": empty})
    one = Circuit(torch.ones(c.n_layers, c.n_heads, dtype=torch.bool), torch.zeros(c.n_layers, c.d_mlp, dtype=torch.bool))
    with pytest.raises(ValueError, match="full"):
        finetune(random_aligned, data, get_method("sct-tune"), cfg(mode="lora"), artifacts={"circuit": one})


def test_gqa_kv_heads_shared():
    """GQA: a key/value head is a circuit parameter when any of its query heads is in the circuit."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tcfg = HookedTransformerConfig(n_layers=1, d_model=16, n_heads=4, d_head=4, d_mlp=8, n_ctx=8, d_vocab=10, act_fn="silu",
                                   normalization_type="RMS", n_key_value_heads=2, gated_mlp=True, positional_embedding_type="rotary")
    model = HookedTransformer(tcfg, move_to_device=False)
    heads = torch.zeros(1, 4, dtype=torch.bool)
    heads[0, 3] = True
    neurons = torch.zeros(1, 8, dtype=torch.bool)
    neurons[0, 5] = True
    masks = circuit_param_masks(model, Circuit(heads, neurons))
    kv = masks["blocks.0.attn._W_K"]
    assert kv[1].all() and not kv[0].any()  # query head 3 -> kv head 3 // 2 = 1
    assert masks["blocks.0.attn._W_V"][1].all()
    assert masks["blocks.0.mlp.W_gate"][:, 5].all() and masks["blocks.0.mlp.W_gate"].sum() == 16
    assert masks["blocks.0.attn.W_Q"][3].all() and masks["blocks.0.attn.W_Q"].sum() == 16 * 4
