"""Circuit evaluation: effects, random controls, faithfulness curves, seed stability.

What a circuit does (removing it changes ASR, by more than random circuits of its size) needs the
trained tiny organisms: those tests are slow. The bookkeeping (sizes, orders, AUCs, the empty
circuit, errors, hooks) runs on random-weight organism-shaped models."""

import json

import pytest
import torch

from safecircuits.circuits import baselines as B
from safecircuits.circuits import evaluate as E
from safecircuits.circuits.circuit import Circuit
from safecircuits.circuits.discover import DiscoveryConfig
from safecircuits.errors import InputError


def no_hooks(model):
    return all(not hp.fwd_hooks and not hp.bwd_hooks for hp in model.hook_dict.values())


def empty_like(lm) -> Circuit:
    c = lm.model.cfg
    return Circuit(torch.zeros(c.n_layers, c.n_heads, dtype=torch.bool), torch.zeros(c.n_layers, c.d_mlp, dtype=torch.bool),
                   torch.zeros(c.n_layers, c.n_heads), torch.zeros(c.n_layers, c.d_mlp), {"model": lm.name})


def hand_circuit(lm, n_heads: int = 3, n_neurons: int = 10) -> Circuit:
    """A scored circuit of the first `n_heads` heads and `n_neurons` neurons (scores fall with the index)."""
    c = lm.model.cfg
    hs = torch.arange(c.n_layers * c.n_heads, 0, -1).float().view(c.n_layers, c.n_heads)
    ns = torch.arange(c.n_layers * c.d_mlp, 0, -1).float().view(c.n_layers, c.d_mlp)
    heads = torch.zeros(c.n_layers * c.n_heads, dtype=torch.bool)
    heads[:n_heads] = True
    neurons = torch.zeros(c.n_layers * c.d_mlp, dtype=torch.bool)
    neurons[:n_neurons] = True
    return Circuit(heads.view_as(hs), neurons.view_as(ns), hs, ns, {"model": lm.name, "ablation": "zero"})


@pytest.fixture(scope="module")
def few_prompts(random_backdoor):
    """Ten test prompts per label (harmful, harmless, triggered)."""
    return random_backdoor.profile.eval_prompts("test", limit=10)


@pytest.fixture(scope="module")
def backdoor_circuit(tiny_backdoor):
    """The top 5% (13 of 264 components) by attribution patching of the backdoor metric."""
    d = tiny_backdoor.profile.objective_data(tiny_backdoor, "backdoor", "train")
    d = {k: ps.sample(128, 0) for k, ps in d.items()}
    return B.attribution_patching(tiny_backdoor, "backdoor", d, DiscoveryConfig(batch_size=64, target_sparsity=0.05, progress=False))


@pytest.mark.slow
def test_removing_backdoor_circuit_restores_clean_output(tiny_backdoor, backdoor_circuit):
    """Measured on held-out (test) prompts: B = CE(clean | triggered) - CE(backdoor | triggered)
    goes from 0.58 to -2.2 (-2.4 to -2.2 over three training samples) when the circuit is
    removed, and triggered ASR from 0.99 to 0.0; random circuits of the same size move B by
    -0.37 to +0.06 (five draws)."""
    test = tiny_backdoor.profile.objective_data(tiny_backdoor, "backdoor", "test")
    c = backdoor_circuit
    assert c.n_components == 13
    full = B.behaviour_value(tiny_backdoor, "backdoor", test)
    removed = B.behaviour_value(tiny_backdoor, "backdoor", test, c)
    rand = [B.behaviour_value(tiny_backdoor, "backdoor", test, B.random_like(c, s)) for s in range(3)]
    assert full - removed > 1.0, (full, removed)
    assert full - removed > max(full - r for r in rand) + 0.5, (full, removed, rand)

    eff = E.circuit_effect(tiny_backdoor, c, modes=("remove",))
    assert eff["full"]["triggered_asr"] >= 0.8
    assert eff["remove"]["triggered_asr"] <= 0.3
    assert eff["delta"]["remove"]["triggered_asr"] <= -0.5
    assert "only" not in eff and eff["ablation"] == "zero"
    assert no_hooks(tiny_backdoor.model)
    json.dumps(eff.to_dict())


@pytest.mark.slow
def test_removing_safety_circuit_raises_asr(tiny_aligned):
    """Measured: the top-5% attribution safety circuit removed takes ASR from 0.0 to 0.97; three
    random circuits of its size move ASR by 0.0, 0.0 and 0.0."""
    d = tiny_aligned.profile.objective_data(tiny_aligned, "safety", "train")
    d = {k: ps.sample(128, 0) for k, ps in d.items()}
    c = B.attribution_patching(tiny_aligned, "safety", d, DiscoveryConfig(batch_size=64, target_sparsity=0.05, progress=False))
    eff = E.circuit_effect(tiny_aligned, c, modes=("remove", "only"))
    assert eff["full"]["asr"] <= 0.1
    assert eff["remove"]["asr"] >= 0.5
    assert "triggered_asr" not in eff["full"]
    assert eff["utility_kept"]["remove"]["harmless_compliance"] == pytest.approx(
        eff["remove"]["harmless_compliance"] / eff["full"]["harmless_compliance"])
    assert eff["remove"]["kl_harmless"] > 0 and eff["only"]["kl_harmless"] > eff["remove"]["kl_harmless"]
    rc = E.random_control(tiny_aligned, c, n_draws=3, seed=0)
    assert rc["circuit"]["asr_delta"] == pytest.approx(eff["delta"]["remove"]["asr"])
    assert rc["circuit"]["asr_delta"] > max(rc["random"]["asr_delta"]) + 0.4, rc.to_dict()


def test_empty_circuit_effect_equals_full_model(random_backdoor, few_prompts):
    eff = E.circuit_effect(random_backdoor, empty_like(random_backdoor), few_prompts, max_new_tokens=8)
    assert eff["remove"] == eff["full"]
    assert all(v == 0 for v in eff["delta"]["remove"].values() if v is not None)
    full = eff["full"]
    # kept utility is removed / full: 1 for the empty circuit (None where the full figure is 0)
    assert eff["utility_kept"]["remove"] == {k: (1.0 if full[f] else None) for k, f in
                                             (("harmless_compliance", "harmless_compliance"), ("harmless_exact_match", "harmless_exact_match"))}
    assert full["kl_harmless"] == 0.0
    # the empty circuit alone is the model with every head and neuron ablated: a different model
    assert eff["only"]["kl_harmless"] > 1e-3 and eff["only"]["harmless_ce"] != full["harmless_ce"]
    assert set(full) >= {"asr", "refusal_rate", "triggered_asr", "harmless_compliance", "harmless_exact_match",
                         "harmless_ce", "kl_harmless"}
    json.loads(json.dumps(eff.to_dict()))
    assert no_hooks(random_backdoor.model)


@pytest.mark.slow
def test_mean_ablation_effect(tiny_backdoor, backdoor_circuit):
    """Measured: mean-ablating the circuit takes triggered ASR from 0.99 to 0.03."""
    eff = E.circuit_effect(tiny_backdoor, backdoor_circuit, ablation="mean", modes=("remove",))
    assert eff["ablation"] == "mean"
    assert eff["full"]["triggered_asr"] >= 0.8 and eff["remove"]["triggered_asr"] <= 0.3, eff.to_dict()
    assert eff["remove"]["harmless_ce"] > eff["full"]["harmless_ce"] > 0
    assert no_hooks(tiny_backdoor.model)


def test_mean_ablation_effect_mechanics(random_backdoor, few_prompts):
    c = hand_circuit(random_backdoor)
    zero = E.circuit_effect(random_backdoor, c, few_prompts, modes=("remove",), max_new_tokens=4)
    mean = E.circuit_effect(random_backdoor, c, few_prompts, ablation="mean", modes=("remove",), max_new_tokens=4)
    assert mean["ablation"] == "mean" and zero["ablation"] == "zero"
    assert mean["full"] == zero["full"]  # the reference model does not depend on the ablation
    assert mean["remove"]["harmless_ce"] != zero["remove"]["harmless_ce"]  # mean values are not zeros
    assert no_hooks(random_backdoor.model)


def test_faithfulness_curve_mechanics(random_backdoor, few_prompts):
    c = hand_circuit(random_backdoor, n_heads=3, n_neurons=10)
    fc = E.faithfulness_curve(random_backdoor, c, fractions=(1.0, 0.0, 0.5, 2.0), prompts=few_prompts, max_new_tokens=6)
    full = E.circuit_effect(random_backdoor, c, few_prompts, modes=("remove",), max_new_tokens=6)
    assert fc["fractions"] == [0.0, 0.5, 1.0, 2.0]
    assert fc["sizes"] == [0, round(0.5 * 13), 13, 26]
    assert [h + n for h, n in zip(fc["n_heads"], fc["n_neurons"], strict=True)] == fc["sizes"]
    assert fc["n_heads"][2] == 3 and fc["n_neurons"][2] == 10  # fraction 1 is exactly the circuit
    assert fc["asr"][0] == full["full"]["asr"] and fc["triggered_asr"][0] == full["full"]["triggered_asr"]
    assert fc["utility"][0] == full["full"]["harmless_compliance"]
    assert fc["triggered_asr"][2] == full["remove"]["triggered_asr"] and fc["asr"][2] == full["remove"]["asr"]
    for key, auc in (("triggered_asr", "auc_triggered_asr"), ("asr", "auc_asr"), ("utility", "auc_utility")):
        y = fc[key]
        expected = ((y[0] + y[1]) / 2 * 0.5 + (y[1] + y[2]) / 2 * 0.5 + (y[2] + y[3]) / 2) / 2.0
        assert fc[auc] == pytest.approx(expected)
    json.dumps(fc.to_dict())
    assert no_hooks(random_backdoor.model)
    with pytest.raises(ValueError, match="fractions"):
        E.faithfulness_curve(random_backdoor, c, fractions=(-0.5, 1.0))
    # "only": size 0 keeps nothing (every component ablated), size 1 is the circuit alone
    only = E.faithfulness_curve(random_backdoor, c, fractions=(0.0, 1.0), mode="only", prompts=few_prompts, max_new_tokens=6)
    everything = Circuit(torch.ones_like(c.heads), torch.ones_like(c.neurons))
    alone = E.circuit_effect(random_backdoor, everything, few_prompts, modes=("remove",), max_new_tokens=6)
    assert only["mode"] == "only" and only["sizes"] == [0, 13]
    assert only["asr"][0] == alone["remove"]["asr"] and only["triggered_asr"][0] == alone["remove"]["triggered_asr"]


@pytest.mark.slow
def test_faithfulness_curve(tiny_backdoor, backdoor_circuit):
    """Measured (triggered ASR at fractions 0, 0.5, 1, 2): 0.99, 0.74, 0.0, 0.0; utility 1.0, 0.88,
    0.78, 0.03; AUC of triggered ASR 0.31. The backdoor goes when the circuit goes, and growing
    the circuit past its size costs utility."""
    c = backdoor_circuit
    fc = E.faithfulness_curve(tiny_backdoor, c, fractions=(1.0, 0.0, 0.5, 2.0))
    tr, ut = fc["triggered_asr"], fc["utility"]
    assert fc["sizes"] == [0, round(0.5 * 13), 13, 26]
    assert tr[0] >= 0.8 and tr[2] <= 0.2 and tr[3] <= 0.2, tr
    assert tr[1] <= tr[0] and fc["auc_triggered_asr"] < 0.6 * tr[0], fc.to_dict()
    assert ut[0] >= 0.9 and ut[3] < ut[0] - 0.3, ut
    assert max(fc["asr"]) <= 0.2  # removing the backdoor does not unlock plain harmful prompts
    assert no_hooks(tiny_backdoor.model)


@pytest.mark.slow
def test_random_control(tiny_backdoor, backdoor_circuit):
    rc = E.random_control(tiny_backdoor, backdoor_circuit, n_draws=3, seed=7)
    assert rc["seeds"] == [7, 8, 9] and rc["n_draws"] == 3
    import statistics

    draws = rc["random"]["triggered_asr_delta"]
    assert len(draws) == 3 and rc["random"]["triggered_asr_delta_std"] == pytest.approx(statistics.stdev(draws))
    assert rc["random"]["triggered_asr_delta_mean"] == pytest.approx(statistics.mean(draws))
    # the circuit removes the backdoor; random circuits of its size mostly do not
    assert rc["circuit"]["triggered_asr_delta"] < rc["random"]["triggered_asr_delta_mean"] - 0.3
    assert rc["circuit"]["n_heads"] == backdoor_circuit.n_heads
    json.dumps(rc.to_dict())
    # circuit_effect's measurements of the same prompts stand in for measuring full and removed again
    eff = E.circuit_effect(tiny_backdoor, backdoor_circuit, modes=("full", "remove"))
    again = E.random_control(tiny_backdoor, backdoor_circuit, n_draws=3, seed=7, measured=(eff["full"], eff["remove"]), progress=False)
    assert again["random"] == rc["random"] and again["circuit"] == rc["circuit"] and again["full"] == rc["full"]


def test_seed_stability():
    g = torch.Generator().manual_seed(0)

    def circ(heads, neurons, seed):
        h = torch.zeros(2, 4, dtype=torch.bool)
        n = torch.zeros(2, 16, dtype=torch.bool)
        for x in heads:
            h.view(-1)[x] = True
        for x in neurons:
            n.view(-1)[x] = True
        return Circuit(h, n, torch.rand(2, 4, generator=g), torch.rand(2, 16, generator=g), {"seed": seed})

    a, b, c = circ([0], [1, 2, 3], 0), circ([0], [1, 2, 4], 1), circ([5], [20, 21], 2)
    s = E.seed_stability([a, b, c])
    assert s["n"] == 3 and s["seeds"] == [0, 1, 2] and s["sizes"] == [4, 4, 3]
    assert s["iou"][0][1] == pytest.approx(3 / 5) and s["iou"][0][2] == 0.0 and s["iou"][1][0] == s["iou"][0][1]
    assert all(s["iou"][i][i] == 1.0 for i in range(3))
    assert s["mean_iou"] == pytest.approx((3 / 5 + 0 + 0) / 3) and s["min_iou"] == 0.0
    assert s["heads_iou_mean"] == pytest.approx((1 + 0 + 0) / 3)
    def spearman(x, y):
        rx, ry = x.flatten().argsort().argsort().double(), y.flatten().argsort().argsort().double()
        return float(torch.corrcoef(torch.stack([rx, ry]))[0, 1])

    flat = [torch.cat([x.head_scores.flatten(), x.neuron_scores.flatten()]) for x in (a, b, c)]
    pairs = [(0, 1), (0, 2), (1, 2)]
    assert s["score_rank_corr_mean"] == pytest.approx(sum(spearman(flat[i], flat[j]) for i, j in pairs) / 3, abs=1e-6)
    assert E.seed_stability([a, a])["mean_iou"] == 1.0 and E.seed_stability([a, a])["score_rank_corr_mean"] == pytest.approx(1.0)
    json.dumps(s.to_dict())
    with pytest.raises(ValueError, match="at least 2"):
        E.seed_stability([a])


def test_results_save_and_load_without_the_model(tmp_path):
    from safecircuits.circuits.results import CircuitEffect, FaithfulnessCurve

    eff = CircuitEffect(full={"asr": 0.0}, circuit={"n_heads": 1}, prompts={"n": 3}, ablation="zero", judge="organism",
                        max_new_tokens=8, remove={"asr": 0.75}, delta={"remove": {"asr": 0.75}})
    back = CircuitEffect.load(eff.save(tmp_path / "e.json"))
    assert back == eff and back["remove"]["asr"] == 0.75 and "only" not in back
    fc = FaithfulnessCurve(circuit={}, mode="remove", ablation="zero", prompts={}, fractions=[0.0, 1.0], sizes=[0, 4], n_heads=[0, 1],
                           n_neurons=[0, 3], scored={"heads": True, "neurons": True}, asr=[0.0, 0.95], utility=[1.0, 1.0],
                           harmless_exact_match=[1.0, 1.0])
    assert fc.smallest_size("asr", 0.9) == 4 and fc.smallest_size("asr", 0.99) is None
    with pytest.raises(ValueError, match="not a faithfulness-curve file"):
        FaithfulnessCurve.load(eff.save(tmp_path / "x.json"))


@pytest.mark.slow
def test_grow_circuit_stops_at_the_ce_bound(tiny_backdoor, backdoor_circuit):
    """With max_ce_increase, a size whose removal raises the CE of the full model's own harmless
    answers past the bound stops the growth, even though it reaches the behaviour goal; a bound no
    size comes near changes nothing."""
    val = tiny_backdoor.profile.eval_prompts("val", limit=64)
    answers = tiny_backdoor.profile.prompts("val", "harmless", n=32, response="own", lm=tiny_backdoor)
    b = backdoor_circuit
    worst = torch.zeros_like(b.neurons).flatten()
    worst[b.neuron_scores.flatten().argmin()] = True
    start = Circuit(b.heads & False, worst.view_as(b.neurons), -b.head_scores, -b.neuron_scores, b.provenance)
    kw = {"max_share": 0.2, "min_utility_kept": 0.9, "ranking": b, "progress": False, "answers": answers}
    free, rec = E.grow_circuit(tiny_backdoor, start, val, max_ce_increase=1e9, **kw)
    plain, _ = E.grow_circuit(tiny_backdoor, start, val, ranking=b, max_share=0.2, min_utility_kept=0.9, progress=False)
    assert rec["reached"] and free.n_components == plain.n_components == rec["size"]
    rises = [r["ce_increase"] for r in rec["steps"]]
    assert rec["harmless_ce_full"] > 0 and rises[-1] > 0.01, rises  # the premise: removing the goal's circuit costs CE
    bound = rises[-1] / 2
    tight, rec2 = E.grow_circuit(tiny_backdoor, start, val, max_ce_increase=bound, **kw)
    last = rec2["steps"][-1]
    assert last["ce_increase"] > bound and all(r["ce_increase"] <= bound for r in rec2["steps"][:-1])
    assert not rec2["reached"] and tight.n_components < free.n_components
    assert E.circuit_effect(tiny_backdoor, tight, answers, modes=("full", "remove"))["remove"]["harmless_ce"] <= (
        1 + bound) * rec["harmless_ce_full"] + 1e-4
    with pytest.raises(InputError, match="answers="):
        E.grow_circuit(tiny_backdoor, start, val, max_ce_increase=0.1, ranking=b, progress=False)
    assert no_hooks(tiny_backdoor.model)


@pytest.mark.slow
def test_grow_circuit_reaches_the_backdoor_goal_on_val(tiny_backdoor, backdoor_circuit):
    """From a circuit of one useless neuron (the worst-scored), growing along attribution patching's
    ranking stops at the first size whose removal takes val triggered ASR to <= 2%, and that circuit
    removes the backdoor on test prompts too."""
    val = tiny_backdoor.profile.eval_prompts("val", limit=64)
    b = backdoor_circuit
    worst = torch.zeros_like(b.neurons).flatten()
    worst[b.neuron_scores.flatten().argmin()] = True
    # its own scores are the attribution scores reversed; the ranking to grow by is passed
    start = Circuit(b.heads & False, worst.view_as(b.neurons), -b.head_scores, -b.neuron_scores, b.provenance)
    grown, rec = E.grow_circuit(tiny_backdoor, start, val, max_share=0.2, min_utility_kept=0.9, ranking=b, progress=False)
    assert rec["ranking"] == b.provenance["method"] == "attribution_patching"
    steps = rec["steps"]
    assert steps[0]["size"] == 1 and steps[0]["triggered_asr"] > 0.02, steps  # the premise: one head is not enough
    assert rec["reached"] and grown.n_components == rec["size"] == steps[-1]["size"] > 1
    assert steps[-1]["triggered_asr"] <= 0.02 and all(r["triggered_asr"] > 0.02 for r in steps[:-1])
    assert (grown.neurons >= start.neurons).all() and grown.provenance["grown"] == rec
    test = E.circuit_effect(tiny_backdoor, grown, tiny_backdoor.profile.eval_prompts("test", limit=64), modes=("full", "remove"))
    assert test["full"]["triggered_asr"] >= 0.9 and test["remove"]["triggered_asr"] <= 0.1
    assert no_hooks(tiny_backdoor.model)


def test_grow_circuit_refuses_bad_input(random_backdoor, few_prompts):
    c = hand_circuit(random_backdoor)
    with pytest.raises(ValueError, match="knows the goals"):
        E.grow_circuit(random_backdoor, c, few_prompts)
    c.provenance["objective"] = "backdoor"
    with pytest.raises(ValueError, match="factor"):
        E.grow_circuit(random_backdoor, c, few_prompts, factor=1.0)
    other = Circuit(c.heads[:1], c.neurons[:1], c.head_scores[:1], c.neuron_scores[:1], c.provenance)
    with pytest.raises(ValueError, match="same model"):
        E.grow_circuit(random_backdoor, c, few_prompts, ranking=other)
    with pytest.raises(ValueError, match="head and neuron scores"):
        E.grow_circuit(random_backdoor, Circuit(c.heads, c.neurons, provenance=c.provenance), few_prompts)


@pytest.mark.slow
def test_utility_metric_scores_what_removal_costs_the_harmless_answers(tiny_backdoor):
    """Exact patching of the harmless answers' CE (B.UTILITY): the head it scores highest, removed
    alone, raises that CE more than the head it scores lowest, by about its score."""
    d = {k: ps.sample(64, 0) for k, ps in tiny_backdoor.profile.objective_data(tiny_backdoor, "backdoor", "train").items()}
    u = B.activation_patching(tiny_backdoor, "backdoor", d, DiscoveryConfig(batch_size=64, progress=False), metric=B.UTILITY,
                              n_heads=1, n_neurons=0)
    assert "B = -CE(harmless)" in u.provenance["metric"]
    hs = u.head_scores.flatten()
    rises = []
    for i in (int(hs.argmax()), int(hs.argmin())):
        heads = torch.zeros_like(u.heads).flatten()
        heads[i] = True
        c = Circuit(heads.view_as(u.heads), torch.zeros_like(u.neurons), provenance=u.provenance)
        eff = E.circuit_effect(tiny_backdoor, c, d["harmless"], modes=("full", "remove"))
        rises.append(eff["remove"]["harmless_ce"] - eff["full"]["harmless_ce"])
    assert rises[0] > rises[1] + 0.1, rises
    assert abs(rises[0] - float(hs.max())) < 0.05 * max(1.0, float(hs.max())), (rises, float(hs.max()))


@pytest.mark.slow
def test_selective_ranking_lowers_what_removal_costs(tiny_backdoor, backdoor_circuit):
    """The selective ranking is attribution's with weight 0; with a large weight its top
    components cost the harmless answers less when removed than attribution's top ones."""
    from safecircuits.circuits.objectives import get_objective
    from safecircuits.circuits.recipes import recipe_for, selective_ranking

    d = {k: ps.sample(64, 0) for k, ps in tiny_backdoor.profile.objective_data(tiny_backdoor, "backdoor", "train").items()}
    plain = selective_ranking(tiny_backdoor, backdoor_circuit, d, utility_weight=0.0, progress=False)
    recipe = recipe_for(tiny_backdoor, "backdoor")
    attribution = B.attribution_patching(tiny_backdoor, get_objective("backdoor", **recipe["objective"]), d,
                                         DiscoveryConfig(progress=False, ablation=backdoor_circuit.provenance["ablation"]),
                                         n_heads=backdoor_circuit.n_heads, n_neurons=backdoor_circuit.n_neurons)
    assert torch.allclose(plain.neuron_scores, attribution.neuron_scores, atol=1e-6)
    sel = selective_ranking(tiny_backdoor, backdoor_circuit, d, utility_weight=10.0, progress=False)
    assert sel.provenance["method"] == "attribution_patching-selective" and sel.provenance["utility_weight"] == 10.0
    n_heads = tiny_backdoor.model.cfg.n_layers * tiny_backdoor.model.cfg.n_heads
    assert sel.provenance["heads_patched"] == min(48, n_heads)  # the default exact_heads covers the organism's heads
    costs = []
    for r in (plain, sel):
        flat = torch.cat([r.head_scores.flatten(), r.neuron_scores.flatten()])
        member = torch.zeros_like(flat, dtype=torch.bool)
        member[flat.argsort(descending=True)[:4]] = True
        n_h = r.heads.numel()
        c = Circuit(member[:n_h].view_as(r.heads), member[n_h:].view_as(r.neurons), provenance=r.provenance)
        eff = E.circuit_effect(tiny_backdoor, c, d["harmless"], modes=("full", "remove"))
        costs.append(eff["remove"]["harmless_ce"] - eff["full"]["harmless_ce"])
    assert costs[1] < costs[0] - 0.2, costs
    with pytest.raises(ValueError, match="utility_weight"):
        selective_ranking(tiny_backdoor, backdoor_circuit, d, utility_weight=-1.0)
    with pytest.raises(ValueError, match="exact_heads"):
        selective_ranking(tiny_backdoor, backdoor_circuit, d, exact_heads=-1, progress=False)
    with pytest.raises(ValueError, match="harmless answers"):
        selective_ranking(tiny_backdoor, backdoor_circuit, {k: v for k, v in d.items() if k != "harmless"})
