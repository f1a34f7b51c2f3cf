"""Circuit-discovery baselines (attribution / activation patching, random): the mechanics on random-weight
organism-shaped models; how well attribution tracks exact patching on the trained backdoor organism (slow)."""

import json

import pytest
import torch

from safecircuits.circuits import baselines as B
from safecircuits.circuits.circuit import Circuit
from safecircuits.circuits.discover import DiscoveryConfig
from safecircuits.errors import InputError

N_SEARCHED = 2 * 4 + 2 * 128  # tiny organism shape: 2 layers x 4 heads, 2 layers x 128 neurons


def no_hooks(model):
    return all(not hp.fwd_hooks and not hp.bwd_hooks for hp in model.hook_dict.values())


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.flatten().argsort().argsort().double(), b.flatten().argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


def cfg(**kw):
    base = dict(batch_size=64, progress=False)
    base.update(kw)
    return DiscoveryConfig(**base)


@pytest.fixture(scope="module")
def backdoor_data(random_backdoor):
    """32 prompts per set: the mechanics do not need more (the slow test below uses 128)."""
    d = random_backdoor.profile.objective_data(random_backdoor, "backdoor", "train")
    return {k: ps.sample(32, 0) for k, ps in d.items()}


@pytest.fixture(scope="module")
def trained_backdoor_data(tiny_backdoor):
    d = tiny_backdoor.profile.objective_data(tiny_backdoor, "backdoor", "train")
    return {k: ps.sample(128, 0) for k, ps in d.items()}


@pytest.fixture(scope="module")
def safety_data(random_aligned):
    d = random_aligned.profile.objective_data(random_aligned, "safety", "train")
    return {k: ps.sample(32, 0) for k, ps in d.items()}


@pytest.mark.parametrize("method", ["attribution", "activation"])
def test_scoring_baselines_sizes_provenance_and_cleanup(random_aligned, safety_data, method):
    model = random_aligned.model
    find = B.BASELINES[method]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    params[0].requires_grad_(False)  # a mixed pattern, restored exactly
    grads = [p.requires_grad for p in params]
    try:
        c = find(random_aligned, "safety", safety_data, cfg(target_sparsity=0.05))
        assert isinstance(c, Circuit)
        assert c.n_components == round(0.05 * N_SEARCHED)
        assert [p.requires_grad for p in model.parameters()] == grads
        assert no_hooks(model)
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), f"weights changed: {k}"
        p = c.provenance
        assert p["method"] == f"{method}_patching" and p["objective"] == "safety" and p["ablation"] == "zero"
        assert p["model"] == random_aligned.name and len(p["data_hash"]) == 64 and p["seed"] == 0
        assert p["config"]["target_sparsity"] == 0.05 and p["seconds"] >= 0
        assert "CE(comply) - CE(refuse)" in p["metric"]
        assert p["b_full"] == pytest.approx(B.behaviour_value(random_aligned, "safety", safety_data, batch_size=64), abs=1e-4)
        json.dumps(c.to_dict())
        # members are the top scores of each family
        if c.n_heads:
            assert c.head_scores[c.heads].min() >= c.head_scores[~c.heads].max()
        assert c.neuron_scores[c.neurons].min() >= c.neuron_scores[~c.neurons].max()
        # explicit sizes, for comparisons at equal size with a mask circuit
        e = find(random_aligned, "safety", safety_data, cfg(), n_heads=2, n_neurons=7)
        assert (e.n_heads, e.n_neurons) == (2, 7) and e.provenance["size"]["explicit"]
        assert no_hooks(model)
    finally:
        params[0].requires_grad_(True)


def test_default_size_and_family_norm(random_aligned, safety_data):
    c = B.attribution_patching(random_aligned, "safety", safety_data, cfg())
    assert c.n_components == round(B.DEFAULT_SPARSITY * N_SEARCHED)
    raw = B.attribution_patching(random_aligned, "safety", safety_data, cfg(), family_norm="raw")
    assert raw.n_components == c.n_components
    # the same scores; only the split between families may differ
    assert torch.equal(raw.head_scores, c.head_scores)


def test_layer_range_and_switched_off_family(random_backdoor, backdoor_data):
    c = B.attribution_patching(random_backdoor, "backdoor", backdoor_data, cfg(layers=(1, 2)), n_heads=2, n_neurons=10)
    assert not c.heads[0].any() and not c.neurons[0].any() and c.n_heads == 2 and c.n_neurons == 10
    assert c.head_scores[0].max() < c.head_scores[1].min(), "unsearched layers rank below searched ones"
    h = B.activation_patching(random_backdoor, "backdoor", backdoor_data, cfg(neurons=False, target_sparsity=0.25))
    assert h.neuron_scores is None and h.n_neurons == 0 and h.n_heads == 2  # 25% of 8 heads
    assert h.provenance["neuron_method"] is None
    assert no_hooks(random_backdoor.model)
    with pytest.raises(ValueError, match="searched"):
        B.attribution_patching(random_backdoor, "backdoor", backdoor_data, cfg(layers=(1, 2)), n_heads=5)


def test_mean_ablation_attribution_runs_and_cleans_up(random_backdoor, backdoor_data):
    c = B.attribution_patching(random_backdoor, "backdoor", backdoor_data, cfg(ablation="mean"), n_heads=1, n_neurons=8)
    assert c.provenance["ablation"] == "mean" and (c.n_heads, c.n_neurons) == (1, 8)
    assert torch.isfinite(c.head_scores).all() and torch.isfinite(c.neuron_scores).all()
    assert no_hooks(random_backdoor.model)


@pytest.mark.slow
def test_attribution_tracks_exact_activation_patching(tiny_backdoor, trained_backdoor_data):
    """Attribution patching is the first-order estimate of the exact single-component effect.

    Measured on the tiny backdoor organism (backdoor metric, 128 prompts per set; organism
    versions of this session): heads under mean ablation Pearson 0.93-0.95 / Spearman 0.57-0.69
    over three prompt samples; neurons under zero ablation (exact patching, 64 prompts) Pearson
    0.89 / Spearman 0.76-0.79. Zero ablation of a whole head is a large step, where the linear
    estimate is poor for heads (Spearman down to 0.24 over only 8 heads), so the head bound uses
    mean ablation. Bounds leave a wide margin for organism retraining.
    """
    c = cfg(ablation="mean")
    attr = B.attribution_patching(tiny_backdoor, "backdoor", trained_backdoor_data, c)
    exact = B.activation_patching(tiny_backdoor, "backdoor", trained_backdoor_data, c)
    assert pearson(attr.head_scores, exact.head_scores) > 0.6
    assert spearman(attr.head_scores, exact.head_scores) > 0.2
    assert exact.provenance["neuron_method"] == "attribution"
    assert torch.allclose(exact.neuron_scores, attr.neuron_scores, atol=1e-5)

    small = {k: ps[:64] for k, ps in trained_backdoor_data.items()}
    a = B.attribution_patching(tiny_backdoor, "backdoor", small, cfg())
    e = B.activation_patching(tiny_backdoor, "backdoor", small, cfg(), neuron_method="exact")
    assert pearson(a.neuron_scores, e.neuron_scores) > 0.6
    assert spearman(a.neuron_scores, e.neuron_scores) > 0.5
    assert no_hooks(tiny_backdoor.model)


def test_exact_scores_are_single_ablation_effects(random_backdoor, backdoor_data):
    """An activation-patching head score is B(full) - B(head removed), as `behaviour_value` measures it."""
    data = {k: ps[:64] for k, ps in backdoor_data.items()}
    e = B.activation_patching(random_backdoor, "backdoor", data, cfg(), n_heads=1, n_neurons=0)
    full = B.behaviour_value(random_backdoor, "backdoor", data, batch_size=64)
    removed = B.behaviour_value(random_backdoor, "backdoor", data, e, batch_size=64)
    ((layer, h),) = e.heads.nonzero().tolist()
    assert abs(full - e.provenance["b_full"]) < 1e-4
    assert abs((full - removed) - float(e.head_scores[layer, h])) < 1e-4


@pytest.mark.parametrize("ablation", ["zero", "mean", "resample"])
def test_replicated_patching_equals_one_forward_per_component(random_backdoor, backdoor_data, ablation):
    """Several components per forward (the batch replicated, one ablation per copy) give the same
    scores as one forward per component, for heads and exactly scored neurons, under every ablation;
    a chunk size that does not divide the component count leaves no component out."""
    data = {k: ps[:16] for k, ps in backdoor_data.items()}
    one = B.activation_patching(random_backdoor, "backdoor", data, cfg(ablation=ablation, batch_size=8, patch_batch=1),
                                neuron_method="exact")
    many = B.activation_patching(random_backdoor, "backdoor", data, cfg(ablation=ablation, batch_size=8, patch_batch=7),
                                 neuron_method="exact")
    assert one.head_scores.abs().sum() > 0 and one.neuron_scores.abs().sum() > 0
    assert torch.allclose(one.head_scores, many.head_scores, atol=1e-4)
    assert torch.allclose(one.neuron_scores, many.neuron_scores, atol=1e-4)
    assert no_hooks(random_backdoor.model)
    assert B.patch_batch_for(cfg(), "cpu") == 1 and B.patch_batch_for(cfg(), "cuda") == 16
    assert B.patch_batch_for(cfg(), "cpu", tiny=True) == 8
    assert B.patch_batch_for(cfg(patch_batch=5), "cuda") == 5
    with pytest.raises(ValueError, match="patch_batch must be >= 1"):
        cfg(patch_batch=0)


def test_random_circuits(random_aligned, safety_data):
    r = B.random_circuit(random_aligned, "safety", safety_data, cfg(), n_heads=3, n_neurons=11, seed=5)
    assert (r.n_heads, r.n_neurons) == (3, 11) and r.provenance["method"] == "random" and r.provenance["seed"] == 5
    again = B.random_circuit(random_aligned, "safety", safety_data, cfg(), n_heads=3, n_neurons=11, seed=5)
    assert torch.equal(r.heads, again.heads) and torch.equal(r.neurons, again.neurons)
    d = B.random_circuit(random_aligned, "safety", None, cfg(target_sparsity=0.1))
    assert d.n_components == round(0.1 * N_SEARCHED)
    assert torch.equal(d.top_k(d.n_heads, d.n_neurons).neurons, d.neurons), "members are the top random scores"

    like = [B.random_like(r, s) for s in range(4)]
    assert all((x.n_heads, x.n_neurons) == (3, 11) for x in like)
    assert len({tuple(x.neurons.flatten().nonzero().flatten().tolist()) for x in like}) == 4
    assert torch.equal(B.random_like(r, 1).neurons, like[1].neurons)
    ranged = B.random_like(Circuit(r.heads, r.neurons & False, provenance={"config": {"layers": [1, 2]}}), 0)
    assert not ranged.heads[0].any() and ranged.n_heads == 3
    assert no_hooks(random_aligned.model)


def test_registry_shares_discover_signature(random_backdoor, backdoor_data):
    data = {k: ps[:32] for k, ps in backdoor_data.items()}
    out = {name: find(random_backdoor, "backdoor", data, cfg(target_sparsity=0.05)) for name, find in B.BASELINES.items()}
    assert {c.n_components for c in out.values()} == {round(0.05 * N_SEARCHED)}
    assert set(B.BASELINES) == {"attribution", "activation", "random"}


def test_metric_errors(random_aligned, safety_data):
    with pytest.raises(ValueError, match="missing"):
        B.attribution_patching(random_aligned, "safety", {"comply": safety_data["comply"]}, cfg())
    from safecircuits.circuits.objectives import CustomObjective

    obj = CustomObjective(loss_fn=lambda logits, batches: {"total": torch.zeros(())}, removed_keys=("comply",))
    with pytest.raises(ValueError, match="metric"):
        B.attribution_patching(random_aligned, obj, safety_data, cfg())
    m = B.BehaviourMetric("custom", target="refuse", alternative="comply")
    c = B.attribution_patching(random_aligned, obj, safety_data, cfg(), metric=m, n_heads=1, n_neurons=1)
    assert c.n_components == 2 and c.provenance["objective"] == "custom"


def test_heads_to_patch_patches_those_heads_exactly_and_estimates_the_rest(random_backdoor, backdoor_data):
    """With `heads_to_patch`, the chosen heads get the exact scores of a full patching run and the
    others attribution patching's estimates; a mask of the wrong shape is an error naming it."""
    data = {k: ps[:16] for k, ps in backdoor_data.items()}
    c = cfg(neurons=False, batch_size=8)
    exact = B.activation_patching(random_backdoor, "backdoor", data, c)
    attr = B.attribution_patching(random_backdoor, "backdoor", data, c)
    mask = torch.zeros_like(exact.head_scores, dtype=torch.bool)
    mask.view(-1)[::2] = True
    part = B.activation_patching(random_backdoor, "backdoor", data, c, heads_to_patch=mask)
    assert part.provenance["heads_patched"] == int(mask.sum())
    assert torch.allclose(part.head_scores[mask], exact.head_scores[mask], atol=1e-5)
    assert torch.allclose(part.head_scores[~mask], attr.head_scores[~mask], atol=1e-5)
    assert not torch.allclose(exact.head_scores[~mask], attr.head_scores[~mask], atol=1e-5)  # the two differ
    with pytest.raises(InputError, match="heads_to_patch must be a bool tensor"):
        B.activation_patching(random_backdoor, "backdoor", data, c, heads_to_patch=mask[:1])
