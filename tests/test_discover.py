"""The discovery loop on random-weight organism-shaped models (few steps: behaviour of the loop, not circuit quality;
circuit-quality figures are in test_circuit_figures.py, marked slow)."""

import pytest
import torch

from safecircuits.circuits.circuit import Circuit
from safecircuits.circuits.discover import DiscoveryConfig, discover_circuit
from safecircuits.circuits.objectives import CustomObjective, response_ce


def no_hooks(model):
    return all(not hp.fwd_hooks and not hp.bwd_hooks for hp in model.hook_dict.values())


def small_cfg(**kw):
    base = dict(max_steps=30, val_every=10, batch_size=8, progress=False, patience=100)
    base.update(kw)
    return DiscoveryConfig(**base)


@pytest.fixture(scope="module")
def safety_data(random_aligned):
    d = random_aligned.profile.objective_data(random_aligned, "safety", "train")
    v = random_aligned.profile.objective_data(random_aligned, "safety", "val")
    return {k: ps[:48] for k, ps in d.items()}, v


def test_safety_discovery_trains_only_masks_and_cleans_up(random_aligned, safety_data):
    model = random_aligned.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.requires_grad for p in model.parameters()]
    c = discover_circuit(random_aligned, "safety", safety_data[0], small_cfg(lr=0.3), val_data=safety_data[1])
    assert isinstance(c, Circuit)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"weights changed: {k}"
    assert [p.requires_grad for p in model.parameters()] == grads
    assert no_hooks(model)
    p = c.provenance
    assert p["objective"] == "safety" and p["mask"] == "sigmoid-ste" and p["ablation"] == "zero"
    assert p["model"] == random_aligned.name and len(p["data_hash"]) == 64 and p["seed"] == 0
    assert p["history"] and {"step", "circuit_size", "train/comply_removed", "val/behaviour"} <= set(p["history"][0])
    # 30 steps at lr 0.3 from logit 1.0 drop some components
    assert c.n_components > 0


def test_discovery_is_deterministic_for_a_seed(random_aligned, safety_data):
    a = discover_circuit(random_aligned, "safety", safety_data[0], small_cfg(max_steps=15), val_data=safety_data[1])
    b = discover_circuit(random_aligned, "safety", safety_data[0], small_cfg(max_steps=15), val_data=safety_data[1])
    assert torch.equal(a.heads, b.heads) and torch.equal(a.neurons, b.neurons)
    assert torch.allclose(a.neuron_scores, b.neuron_scores)


def test_checkpoint_resume_matches_uninterrupted_run(random_aligned, safety_data, tmp_path):
    """Interrupt a run during its 14th training step: the interrupt saves a checkpoint at step 13,
    and rerunning resumes from it and ends exactly where an uninterrupted run ends."""
    from safecircuits.circuits.objectives import SafetyObjective

    class Interrupted(SafetyObjective):
        calls = 0

        def loss(self, *a, **k):
            if torch.is_grad_enabled():
                Interrupted.calls += 1
                if Interrupted.calls == 14:
                    raise KeyboardInterrupt
            return super().loss(*a, **k)

    cfg = small_cfg(max_steps=20, checkpoint_dir=str(tmp_path), checkpoint_every=5)
    full = discover_circuit(random_aligned, "safety", safety_data[0], small_cfg(max_steps=20), val_data=safety_data[1])
    with pytest.raises(KeyboardInterrupt):
        discover_circuit(random_aligned, Interrupted(), safety_data[0], cfg, val_data=safety_data[1])
    ck = list(tmp_path.glob("masks-*.pt"))
    assert len(ck) == 1 and torch.load(ck[0], weights_only=False)["step"] == 13
    assert not list(tmp_path.glob("*.tmp")), "no partial checkpoint files remain"
    resumed = discover_circuit(random_aligned, "safety", safety_data[0], cfg, val_data=safety_data[1])
    assert torch.equal(resumed.neuron_scores, full.neuron_scores) and torch.equal(resumed.heads, full.heads)
    assert resumed.provenance["history"] == full.provenance["history"]


def test_rerun_of_a_finished_run_reports_the_time_it_took(random_aligned, safety_data, tmp_path):
    """A rerun of a finished discovery returns from its checkpoint, and its circuit still records
    the wall time the discovery took (not the few milliseconds of the reload)."""
    import time

    from safecircuits.circuits.objectives import SafetyObjective

    class Slow(SafetyObjective):
        sleep = 0.05

        def loss(self, *a, **k):
            if torch.is_grad_enabled():
                time.sleep(Slow.sleep)
            return super().loss(*a, **k)

    cfg = small_cfg(max_steps=10, checkpoint_dir=str(tmp_path))
    first = discover_circuit(random_aligned, Slow(), safety_data[0], cfg, val_data=safety_data[1])
    assert first.provenance["seconds"] >= 0.5  # 10 steps of >= 50 ms each
    Slow.sleep = 0.0  # a rerun that trained again would now be fast and report its own short time
    again = discover_circuit(random_aligned, Slow(), safety_data[0], cfg, val_data=safety_data[1])
    assert torch.equal(again.heads, first.heads) and torch.equal(again.neurons, first.neurons)
    assert again.provenance["seconds"] >= 0.9 * first.provenance["seconds"]


def test_heads_only_and_layer_range(random_aligned, safety_data):
    c = discover_circuit(random_aligned, "safety", safety_data[0], small_cfg(neurons=False, layers=(1, 2)), val_data=safety_data[1])
    assert c.n_neurons == 0 and c.neuron_scores is None
    assert not c.heads[0].any()


def test_hard_concrete_hits_target_sparsity(random_aligned, safety_data):
    c = discover_circuit(random_aligned, "safety", safety_data[0], small_cfg(mask="hard-concrete", target_sparsity=0.05),
                         val_data=safety_data[1])
    n_total = c.total_components
    assert c.n_components == round(0.05 * n_total)
    assert c.provenance["mask"] == "hard-concrete"


def test_max_share_caps_each_family_keeping_the_most_strongly_dropped(random_aligned, safety_data):
    cfg = dict(lr=0.5, max_steps=20)
    free = discover_circuit(random_aligned, "safety", safety_data[0], small_cfg(**cfg), val_data=safety_data[1])
    capped = discover_circuit(random_aligned, "safety", safety_data[0], small_cfg(max_share=(0.0, 0.05), **cfg), val_data=safety_data[1])
    n_neurons = free.neurons.numel()
    assert free.n_neurons > round(0.05 * n_neurons), "the uncapped circuit must be larger than the cap"
    assert capped.n_heads == 0 and capped.n_neurons == round(0.05 * n_neurons)
    assert not (capped.heads & ~free.heads).any() and not (capped.neurons & ~free.neurons).any()  # a subset
    # the capped neurons are the free circuit's most strongly dropped ones
    assert capped.neuron_scores[capped.neurons].min() >= free.neuron_scores[free.neurons & ~capped.neurons].max()
    with pytest.raises(ValueError, match="max_share"):
        small_cfg(max_share=(0.1,))


def test_removal_only_safety_objective_has_no_circuit_alone_term(random_aligned, safety_data):
    from safecircuits.circuits.objectives import get_objective

    obj = get_objective("safety", w_refuse=0.0)
    assert "refuse" not in obj.data_keys
    data = {k: v for k, v in safety_data[0].items() if k != "refuse"}
    val = {k: v for k, v in safety_data[1].items() if k != "refuse"}
    c = discover_circuit(random_aligned, obj, data, small_cfg(max_steps=10, val_every=5), val_data=val)
    h = c.provenance["history"][-1]
    assert "train/refuse_alone" not in h and "train/comply_removed" in h


def test_backdoor_objective_runs_with_two_mask_sets(random_backdoor):
    d = {k: ps[:32] for k, ps in random_backdoor.profile.objective_data(random_backdoor, "backdoor", "train").items()}
    v = random_backdoor.profile.objective_data(random_backdoor, "backdoor", "val")
    c = discover_circuit(random_backdoor, "backdoor", d, small_cfg(max_steps=10, val_every=5), val_data=v)
    h = c.provenance["history"][-1]
    assert {"train/overlap", "train/circuit_size", "train/triggered_main", "train/backdoor_circuit"} <= set(h)


def test_custom_objective(random_aligned, safety_data):
    def loss_fn(logits, batches):
        return {"total": response_ce(logits["comply"], batches["comply"])}

    obj = CustomObjective(loss_fn=loss_fn, removed_keys=("comply",))
    c = discover_circuit(random_aligned, obj, {"comply": safety_data[0]["comply"]}, small_cfg(max_steps=10),
                         val_data={"comply": safety_data[1]["comply"]})
    assert c.provenance["objective"] == "custom"


def test_bad_inputs_are_clear(random_aligned, safety_data):
    with pytest.raises(ValueError, match="missing \\['refuse'"):
        discover_circuit(random_aligned, "safety", {"comply": safety_data[0]["comply"]}, small_cfg())
    with pytest.raises(ValueError, match="unknown objective 'honesty'"):
        discover_circuit(random_aligned, "honesty", safety_data[0], small_cfg())
    with pytest.raises(ValueError, match="unknown ablation"):
        small_cfg(ablation="blur")
    with pytest.raises(ValueError, match="nothing to search"):
        small_cfg(heads=False, neurons=False)
    with pytest.raises(ValueError, match="exceeds the model's 2 layers"):
        discover_circuit(random_aligned, "safety", safety_data[0], small_cfg(layers=(0, 5)), val_data=safety_data[1])


def test_profile_recipe_overrides_merge_over_the_recipes(random_aligned):
    from conftest import random_lm

    from safecircuits.circuits.recipes import RECIPES, recipe_for

    assert recipe_for(random_aligned, "safety") == RECIPES["safety"]  # organisms: the recipe as measured on them
    chat = recipe_for(random_lm("llama"), "safety")
    assert chat["objective"]["w_refuse"] == 0.0 and chat["config"]["max_share"] == (0.03, 0.008)
    assert chat["objective"]["decision_tokens"] == RECIPES["safety"]["objective"]["decision_tokens"]  # the rest kept
    assert recipe_for(random_lm("llama"), "backdoor") == RECIPES["backdoor"]
    with pytest.raises(ValueError, match="unknown objective"):
        recipe_for(random_aligned, "honesty")
