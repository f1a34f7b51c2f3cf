"""Masks, ablation hooks, the Circuit object (fast; random-weight organism-shaped model)."""

import json

import pytest
import torch

from safecircuits.circuits.circuit import Circuit, ShapeMismatchError
from safecircuits.circuits.hooks import AblationType, Ablator, masked
from safecircuits.circuits.masks import HardConcreteMask, SigmoidSTEMask, threshold_for_sparsity
from safecircuits.data.chat import encode_batch
from safecircuits.hooks import common_suffix_len, position_classes
from safecircuits.models.language import Language


def no_hooks(model):
    return all(not hp.fwd_hooks and not hp.bwd_hooks for hp in model.hook_dict.values())


def test_sigmoid_ste_forward_is_hard_and_gradient_is_soft():
    m = SigmoidSTEMask((2, 3), init_logit=1.0)
    with torch.no_grad():
        m.logits[0, 0] = -2.0
    s = m.sample()
    assert s.tolist()[0] == [0.0, 1.0, 1.0] and torch.all(s[1] == 1)
    s.sum().backward()
    assert torch.allclose(m.logits.grad, torch.sigmoid(m.logits) * (1 - torch.sigmoid(m.logits)))
    assert m.hard().tolist()[0] == [0.0, 1.0, 1.0]
    assert m.hard(n_drop=2).sum() == 4
    # penalty: sum over layers of the mean dropped probability
    assert torch.isclose(m.penalty(), (1 - m.probabilities()).mean(1).sum())


def test_hard_concrete_gates_in_unit_interval_and_discretise_to_target():
    torch.manual_seed(0)
    m = HardConcreteMask((4, 50), init_log_alpha=0.0, init_std=2.0)
    s = m.sample()
    assert s.min() >= 0 and s.max() <= 1
    assert ((s == 0) | (s == 1)).any(), "stretched gates hit exact 0/1"
    m.eval()
    assert torch.equal(m.sample(), m.deterministic())
    thr = threshold_for_sparsity(m.log_alpha, 0.1)
    assert int((m.log_alpha < thr).sum()) == 20
    assert int((m.hard(n_drop=20) == 0).sum()) == 20
    p = m.penalty()
    p.backward()
    assert m.log_alpha.grad is not None and m.log_alpha.grad.abs().sum() > 0


def test_threshold_rejects_bad_target():
    with pytest.raises(ValueError, match="target sparsity"):
        threshold_for_sparsity(torch.zeros(3), 1.5)


def _circuit(shape=(2, 4, 128)):
    L, H, N = shape
    heads = torch.zeros(L, H, dtype=torch.bool)
    heads[1, 2] = True
    neurons = torch.zeros(L, N, dtype=torch.bool)
    neurons[0, :5] = True
    return Circuit(heads, neurons, torch.rand(L, H), torch.rand(L, N), {"model": "organism:aligned?size=tiny", "objective": "safety"})


def test_circuit_measures_and_set_ops():
    a = _circuit()
    b = _circuit()
    b.heads[0, 0] = True
    assert a.n_components == 6 and a.sparsity["heads"] == 1 / 8
    assert a.iou(b) == pytest.approx(6 / 7)
    assert (a | b).n_components == 7 and (a & b).n_components == 6 and (b - a).components() == ["L0H0"]
    assert a.top_k(1, 2).n_components == 3


def test_circuit_json_and_pt_round_trip(tmp_path):
    a = _circuit()
    b = Circuit.from_json(a.to_json(tmp_path / "c.json"))
    assert torch.equal(a.heads, b.heads) and torch.equal(a.neurons, b.neurons)
    assert torch.allclose(a.head_scores, b.head_scores, atol=1e-6)
    assert b.provenance["objective"] == "safety"
    assert json.loads((tmp_path / "c.json").read_text())["components"][0] == "L1H2"
    c = Circuit.load(a.save(tmp_path / "c.pt"))
    assert torch.equal(a.neuron_scores, c.neuron_scores)


def test_bad_circuit_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        Circuit.from_json(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a safecircuits circuit"):
        Circuit.from_json(tmp_path / "x.json")


def test_shape_mismatch_names_both_shapes(random_aligned):
    c = _circuit((3, 4, 256))
    with pytest.raises(ShapeMismatchError, match=r"'n_layers': 3.*'n_layers': 2"):
        with c.ablate(random_aligned.model):
            pass
    with pytest.raises(ShapeMismatchError):
        c.iou(_circuit())


def test_hooks_removed_even_on_error(random_aligned):
    model = random_aligned.model
    c = _circuit()
    with pytest.raises(RuntimeError, match="boom"):
        with c.ablate(model):
            assert not no_hooks(model)
            raise RuntimeError("boom")
    assert no_hooks(model)


def test_zero_ablation_of_everything_kills_the_output(random_aligned):
    model, _, chat = random_aligned
    b = encode_batch(chat, Language(0).prompt_set("test", "harmless").prompts[:4])
    clean = model(b.tokens)
    L, H, N = model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_mlp
    with masked(model, torch.ones(L, H), torch.ones(L, N)):
        same = model(b.tokens)
    assert torch.allclose(clean, same)
    with masked(model, torch.zeros(L, H), torch.ones(L, N)):
        no_attn = model(b.tokens)
    assert not torch.allclose(clean, no_attn)
    assert no_hooks(model)


@pytest.mark.parametrize("kind", ["mean", "resample"])
def test_mean_and_resample_ablation_replace_with_reference_values(random_aligned, kind):
    model, _, chat = random_aligned
    lang = Language(0)
    ref = lang.prompt_set("train", "harmless")[:40]
    ab = Ablator.build(model, chat, kind, ref)
    assert ab.ablation == AblationType(kind)
    L, H, N = model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_mlp
    b = encode_batch(chat, lang.prompt_set("test", "harmful").prompts[:4], lang.prompt_set("test", "harmful").responses[:4])
    ab.set_batch(position_classes(b, common_suffix_len(chat)))
    seen = {}
    with masked(model, torch.zeros(L, H), torch.ones(L, N), ab):
        model.run_with_hooks(b.tokens, fwd_hooks=[("blocks.1.hook_attn_out", lambda x, hook: seen.setdefault("o", x))])
    with masked(model, torch.zeros(L, H), torch.ones(L, N)):
        model.run_with_hooks(b.tokens, fwd_hooks=[("blocks.1.hook_attn_out", lambda x, hook: seen.setdefault("z", x))])
    # zero-ablated attention output is the bias only; mean/resample ablation is not
    assert not torch.allclose(seen["o"], seen["z"])
    if kind == "mean":
        assert ab.heads_ref[0].shape == (ab.n_classes, H, model.cfg.d_head)
    else:
        assert ab.heads_ref[0].shape[1:] == (ab.n_classes, H, model.cfg.d_head) and ab.heads_ref[0].shape[0] == 40
    assert no_hooks(model)


def test_ablation_type_parse_error():
    with pytest.raises(ValueError, match="unknown ablation 'blur'"):
        AblationType.parse("blur")
def test_mean_ablation_without_reference_is_a_clear_error(random_aligned):
    with pytest.raises(ValueError, match="needs reference activations"):
        with _circuit().ablate(random_aligned.model, ablation="mean"):
            pass
