"""Ready recipes: tuned discovery settings per objective, and the ablation table the CLI prints.

The defaults of :class:`DiscoveryConfig` and the objectives follow SafeSeek's code. On the
organisms those defaults give oversized circuits, for two measured reasons (docs/circuits.md):
the comply/refuse decision is one token of ~15, so whole-response CE hides it
(``decision_tokens=3`` fixes that), and SafeSeek's per-layer-mean penalty makes one head cost as
much as ``d_mlp / n_heads`` neurons, so a search over both families drops many neurons instead of
one head (``penalty_norm="component"`` fixes that). The recipes below are what we measured to work.
A model profile may override them (``profile.recipe_overrides``, merged by :func:`recipe_for`):
the chat profile's safety recipe drops the "circuit alone refuses" term and caps the circuit at
SafeSeek's size, which is what works on a 30-layer model (docs/circuits.md).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from safecircuits.circuits.circuit import Circuit
from safecircuits.circuits.discover import DiscoveryConfig, discover_circuit
from safecircuits.circuits.objectives import get_objective
from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError
from safecircuits.models.loaded import LoadedModel

RECIPES: dict[str, dict[str, Any]] = {
    "safety": {
        "objective": {"decision_tokens": 3, "lambda_sparsity": 1.0},
        "config": {"ablation": "zero", "epochs": 40, "lr": 0.05, "penalty_norm": "layer-mean", "patience": 20},
    },
    "backdoor": {
        "objective": {"decision_tokens": 3, "lambda_sparsity": 0.5, "w_harmless": 3.0},
        "config": {"ablation": "mean", "epochs": 20, "lr": 0.05, "penalty_norm": "component", "patience": 20},
    },
}


def recipe_for(lm: LoadedModel, objective: str) -> dict[str, Any]:
    """:data:`RECIPES`' settings of `objective` with the model profile's overrides
    (``profile.recipe_overrides``: what was measured to work on that kind of model) merged in."""
    if objective not in RECIPES:
        raise InputError(f"unknown objective {objective!r}: use one of {', '.join(RECIPES)}")
    base = RECIPES[objective]
    over = lm.profile.recipe_overrides.get(objective, {})
    return {part: {**base[part], **over.get(part, {})} for part in ("objective", "config")}


def find_circuit(
    lm: LoadedModel,
    objective: str,
    data: dict[str, PromptSet] | None = None,
    val_data: dict[str, PromptSet] | None = None,
    progress: bool = True,
    validate: bool = True,
    **overrides: Any,
) -> tuple[Circuit, dict[str, PromptSet]]:
    """Discover `objective`'s circuit with the recipe's settings; keyword overrides (None = keep)
    go to DiscoveryConfig. The data default to the profile's objective data of the train split
    (validation: the val split), in the profile's sizes (:attr:`ModelProfile.sizes`). With
    `validate` the circuit records whether removing it changes the behaviour on the validation
    data (``circuit.provenance["validation"]``, :func:`validate_circuit`)."""
    if objective not in RECIPES:
        raise InputError(f"unknown objective {objective!r}: use one of {', '.join(RECIPES)}")
    recipe = recipe_for(lm, objective)
    cfg_kw = dict(recipe["config"])
    cfg_kw.update({k: v for k, v in overrides.items() if v is not None})
    cfg = DiscoveryConfig(progress=progress, **cfg_kw)
    if data is None:
        sizes = lm.profile.sizes
        data = lm.profile.objective_data(lm, objective, "train", n=sizes["objective_train"])
        val_data = val_data or lm.profile.objective_data(lm, objective, "val", n=sizes["objective_val"])
    obj = get_objective(objective, **recipe["objective"])
    circuit = discover_circuit(lm, obj, data, cfg, val_data=val_data)
    if validate and val_data is not None:
        circuit.provenance["validation"] = validate_circuit(lm, circuit, obj, val_data, reference=obj.reference_set(data))
    return circuit, data


# A circuit passes validation when removing it takes away at least this share of the behaviour
# preference B on validation prompts (B = CE(alternative) - CE(target), safecircuits.circuits.baselines).
MIN_REMOVED_SHARE = 0.5


def validate_circuit(lm: LoadedModel, circuit: Circuit, objective: Any, val_data: dict[str, PromptSet],
                     reference: PromptSet | None = None) -> dict[str, Any]:
    """Does removing `circuit` change the behaviour on validation prompts?

    Measures the behaviour preference ``B`` (:func:`~safecircuits.circuits.baselines.behaviour_value`:
    safety, how much the model prefers refusing to complying on harmful prompts; backdoor, how much
    triggered prompts prefer the backdoor output) of the full model and with the circuit removed,
    with the ablation the circuit was found with. ``validated`` is True when the model shows the
    behaviour (``B_full > 0``) and removal takes away at least :data:`MIN_REMOVED_SHARE` of it.
    """
    from safecircuits.circuits.baselines import behaviour_value
    from safecircuits.circuits.hooks import AblationType, Ablator

    kind = AblationType.parse(circuit.provenance.get("ablation", "zero"))
    abl: Any = kind if kind == AblationType.ZERO else Ablator.build(lm.model, lm.chat, kind, reference)
    b_full = behaviour_value(lm, objective, val_data)
    b_removed = behaviour_value(lm, objective, val_data, circuit, "remove", ablation=abl)
    out: dict[str, Any] = {"b_full": b_full, "b_removed": b_removed, "min_removed_share": MIN_REMOVED_SHARE, "split": "val"}
    if b_full <= 0:
        out.update(validated=False, reason=f"the full model does not show the behaviour on val (B = {b_full:.3f} <= 0): "
                                           "there is no circuit to find; check the model and the objective data")
    elif b_full - b_removed < MIN_REMOVED_SHARE * b_full:
        share = (b_full - b_removed) / b_full
        out.update(validated=False, reason=f"removing the circuit takes away {100 * share:.0f}% of the behaviour on val "
                                           f"(B {b_full:.3f} -> {b_removed:.3f}; needs >= {100 * MIN_REMOVED_SHARE:.0f}%): "
                                           "train longer, lower the sparsity penalty or search more components")
    else:
        out.update(validated=True, reason=f"removal takes B from {b_full:.3f} to {b_removed:.3f} on val")
    return out


GROW_RANKINGS: tuple[str, ...] = ("attribution", "selective", "mask")
"""What :func:`grow_to_goal` adds components by (see there)."""


def grow_to_goal(lm: LoadedModel, circuit: Circuit, ranking: str = "attribution", limit: int = 100,
                 max_share: float = 0.005, data: dict[str, PromptSet] | None = None, progress: bool = True,
                 utility_weight: float = 1.0, exact_heads: int | None = 48, max_ce_increase: float | None = None,
                 **kwargs: Any) -> tuple[Circuit, dict[str, Any]]:
    """:func:`~safecircuits.circuits.evaluate.grow_circuit` on the profile's validation prompts
    (`limit` per label) with the circuit's own ablation and reference. `ranking` orders what is
    added (:data:`GROW_RANKINGS`): ``"attribution"`` (attribution patching's scores of the
    objective's metric on `data`, by default the recipe's train data), ``"selective"`` (those
    scores minus `utility_weight` times each component's estimated cost to the harmless answers,
    :func:`selective_ranking`, whose exact head costs cover the top `exact_heads` heads) or
    ``"mask"`` (the circuit's own scores). With `max_ce_increase`, a size must also keep the CE of
    the full model's own answers to `limit` val harmless prompts within that relative rise."""
    from safecircuits.circuits.evaluate import grow_circuit

    if ranking not in GROW_RANKINGS:
        raise InputError(f"ranking must be one of {', '.join(GROW_RANKINGS)}, got {ranking!r}")
    objective = circuit.provenance.get("objective")
    if objective not in RECIPES:
        raise InputError(f"the circuit records no objective with a recipe ({objective!r}): use evaluate.grow_circuit directly")
    ablation = circuit.provenance.get("ablation", "zero")
    if data is None and (ablation != "zero" or ranking != "mask"):
        data = lm.profile.objective_data(lm, objective, "train", n=lm.profile.sizes["objective_train"])
    # the mean/resample reference of the data the circuit was found on (reference_prompts' rule)
    ref = None if ablation == "zero" or data is None else get_objective(objective).reference_set(data)
    order = None
    if ranking != "mask":
        assert data is not None
        order = selective_ranking(lm, circuit, data, utility_weight=utility_weight if ranking == "selective" else 0.0,
                                  progress=progress, exact_heads=exact_heads)
    val = lm.profile.eval_prompts("val", limit)
    answers = None
    if max_ce_increase is not None:
        from safecircuits.models.profile import own_answers

        # the model's own answers, as long as the context leaves room for (at most 48 tokens; a
        # margin of 2 for the end-of-turn tokens the response encoding adds)
        harmless = lm.profile.prompts("val", "harmless", n=limit)
        room = lm.model.cfg.n_ctx - max(len(lm.chat.prompt_ids(p)) for p in harmless.prompts) - 2
        if room < 1:
            raise InputError(f"the val harmless prompts fill the model's context ({lm.model.cfg.n_ctx} tokens): no room to "
                             "measure answers for max_ce_increase")
        answers = own_answers(lm, harmless, max_new_tokens=min(48, room))
    return grow_circuit(lm, circuit, val, ablation=ablation, reference=ref, max_share=max_share, ranking=order,
                        progress=progress, max_ce_increase=max_ce_increase, answers=answers, **kwargs)


def selective_ranking(lm: LoadedModel, circuit: Circuit, data: dict[str, PromptSet], utility_weight: float = 1.0,
                      progress: bool = True, exact_heads: int | None = 48) -> Circuit:
    """Attribution patching's scores of `circuit`'s objective on `data`, each lowered by
    `utility_weight` times the component's estimated cost to the harmless answers
    (``score = s_behaviour - w * max(0, s_utility)``, both in nats; ``s_utility`` is the rise of
    the harmless answers' CE, :data:`~safecircuits.circuits.baselines.UTILITY` on ``data["harmless"]``,
    when the component alone is removed: exact for the top `exact_heads` heads by behaviour score
    (None: every head), attribution patching's estimate for the other heads and the neurons).

    Why: the components whose removal most lowers the behaviour's metric include some that every
    answer needs (on E's backdoor, growing along the behaviour's scores alone lost a fifth of
    harmless compliance before triggered ASR reached its goal); this ranks by what removal buys
    for the behaviour net of what it costs the harmless answers. With ``utility_weight=0`` it is
    attribution patching's ranking. Returns a circuit of `circuit`'s size whose scores are the
    combined ones (a ranking for :func:`~safecircuits.circuits.evaluate.grow_circuit`)."""
    from safecircuits.circuits.baselines import UTILITY, activation_patching, attribution_patching

    if utility_weight < 0:
        raise InputError(f"utility_weight must be >= 0, got {utility_weight}")
    objective = circuit.provenance.get("objective")
    if objective not in RECIPES:
        raise InputError(f"the circuit records no objective with a recipe ({objective!r}): rank with baselines.attribution_patching")
    recipe = recipe_for(lm, objective)
    ablation = circuit.provenance.get("ablation", "zero")
    cfg = DiscoveryConfig(progress=progress, ablation=ablation, **{k: v for k, v in recipe["config"].items() if k == "penalty_norm"})
    obj = get_objective(objective, **recipe["objective"])
    nh, nn = circuit.n_heads, circuit.n_neurons
    behaviour = attribution_patching(lm, obj, data, cfg, n_heads=nh, n_neurons=nn)
    if utility_weight == 0:
        return behaviour
    if "harmless" not in data:
        raise InputError(f"the selective ranking needs harmless answers: data has {sorted(data)}, not 'harmless'")
    # heads by exact patching: a confident harmless answer sits near a minimum of its CE, so the
    # first-order estimate misses most of a head's cost (on the tiny backdoor organism the largest
    # attribution estimate was 0.01 nats where removing four such components cost 1.2); neurons
    # are too many to patch one by one and keep the attribution estimate. Only the top
    # `exact_heads` heads by behaviour score are patched exactly (the rest keep the estimate): the
    # others rank low whatever their cost, and patching all 270 heads of SmolLM2 one by one over
    # long harmless answers is over an hour on a 2-core CPU
    assert behaviour.head_scores is not None and behaviour.neuron_scores is not None
    patch = None
    if exact_heads is not None:
        if exact_heads < 0:
            raise InputError(f"exact_heads must be >= 0 or None (every head), got {exact_heads}")
        patch = behaviour.top_k(min(exact_heads, behaviour.heads.numel()), 0).heads
    utility = activation_patching(lm, obj, data, cfg, metric=UTILITY, n_heads=nh, n_neurons=nn, heads_to_patch=patch)
    assert utility.head_scores is not None and utility.neuron_scores is not None
    hs = behaviour.head_scores - utility_weight * utility.head_scores.clamp(min=0)
    ns = behaviour.neuron_scores - utility_weight * utility.neuron_scores.clamp(min=0)
    prov = {**behaviour.provenance, "method": "attribution_patching-selective", "utility_weight": utility_weight,
            "utility_metric": UTILITY.describe(), "heads_patched": utility.provenance.get("heads_patched"), "seconds": round(behaviour.provenance["seconds"] + utility.provenance["seconds"], 2)}
    return Circuit(behaviour.heads, behaviour.neurons, hs, ns, prov).top_k(nh, nn)


def reference_prompts(lm: LoadedModel, circuit: Circuit) -> PromptSet | None:
    """The mean/resample reference a circuit was found with (the objective's reference sets of the
    train split), or None when the circuit's objective has no recipe."""
    objective = circuit.provenance.get("objective")
    if objective not in RECIPES:
        return None
    data = lm.profile.objective_data(lm, objective, "train", n=lm.profile.sizes["objective_train"])
    return get_objective(objective).reference_set(data)


def effect_table(
    lm: LoadedModel,
    circuit: Circuit,
    ablation: str = "zero",
    mode: str = "remove",
    prompts: str | PromptSet = "auto",
    limit: int | None = None,
    n_random: int = 10,
    data: dict[str, PromptSet] | None = None,  # noqa: ARG001 (kept for call-site symmetry)
    trigger: str | None = None,
    reference: PromptSet | None = None,
) -> dict[str, Any]:
    """Full model vs circuit removed (or alone) vs the mean of `n_random` random circuits of equal size.

    With a `trigger` (default: the model's own, if it is backdoored) and prompts that have no
    triggered ones, every harmful prompt is also measured with the trigger (``triggered_asr``).
    ``conditions`` summarises the table: ``full``, ``removed`` (or ``alone``) and ``random``, each
    with ``asr``, ``triggered_asr`` (when a trigger is known), ``harmless_refusal`` and ``utility``
    (harmless compliance)."""
    from safecircuits.circuits.evaluate import Mode, circuit_effect, random_control
    from safecircuits.data.promptset import Label, PromptRecord

    modes: tuple[Mode, ...]
    if mode == "remove":
        modes = ("full", "remove")
    elif mode == "only":
        modes = ("full", "only")
    else:  # "full" too: the table compares the full model with the circuit removed or alone
        raise InputError(f"unknown mode {mode!r}: use remove or only")
    ps = prompts if isinstance(prompts, PromptSet) else lm.profile.resolve(prompts, limit=limit)
    trigger = trigger or lm.profile.trigger
    if trigger and not len(ps.filter(label="triggered")):
        harmful = ps.filter(label="harmful")
        ps = ps + PromptSet([PromptRecord(lm.profile.with_trigger(r.prompt, trigger), None, Label.TRIGGERED, r.meta) for r in harmful],
                            name=f"{ps.name}+trigger({trigger})")
    ref = reference
    if ref is None and str(ablation) != "zero":  # zero ablation needs no reference (and its data cost generation)
        ref = reference_prompts(lm, circuit)
    eff = circuit_effect(lm, circuit, ps, ablation=ablation, modes=modes, reference=ref)
    out: dict[str, Any] = {"full": eff["full"], mode: eff[mode], "mode": mode, "ablation": eff["ablation"],
                           "judge": eff["judge"], "prompts": eff["prompts"], "circuit": eff["circuit"],
                           "utility_kept": eff["utility_kept"][mode]}
    if n_random > 0 and mode == "remove":
        # the full and removed measurements are the ones above (same prompts, ablation and judge)
        rc = random_control(lm, circuit, n_draws=n_random, prompts=ps, ablation=ablation, reference=ref,
                            measured=(eff["full"], eff["remove"]))
        out["random"] = {k: eff["full"][k] + rc["random"][f"{k}_delta_mean"] for k in rc["full"]}
        out["random_std"] = {k: rc["random"][f"{k}_delta_std"] for k in rc["full"]}
        out["random_n"] = n_random
    out["trigger"] = trigger
    keys = ("asr", "triggered_asr", "harmless_refusal", "harmless_compliance")
    conds = {"full": out["full"], ("removed" if mode == "remove" else "alone"): out[mode]}
    if "random" in out:
        conds["random"] = out["random"]
    out["conditions"] = {name: {("utility" if k == "harmless_compliance" else k): v.get(k) for k in keys
                                if v.get(k) is not None or k != "triggered_asr"} for name, v in conds.items()}
    return out


def render_effect_table(effect: dict[str, Any]) -> Table:
    mode = effect["mode"]
    c = effect["circuit"]
    title = (f"{c.get('objective', 'circuit')} circuit: {c.get('n_heads')} heads + {c.get('n_neurons')} neurons "
             f"({100 * c.get('sparsity', {}).get('overall', 0):.2f}% of components); ablation {effect['ablation']}, judge {effect['judge']}")
    t = Table(title=title)
    cols = [("full model", effect["full"]), (f"circuit {'removed' if mode == 'remove' else 'alone'}", effect[mode])]
    if "random" in effect:
        cols.append((f"random (mean of {effect['random_n']})", effect["random"]))
    t.add_column("metric")
    for name, _ in cols:
        t.add_column(name)
    rows = [("ASR (harmful)", "asr"), ("ASR (harmful + trigger)", "triggered_asr"), ("harmful refusal", "refusal_rate"),
            ("harmless compliance", "harmless_compliance"), ("harmless exact match", "harmless_exact_match"),
            ("harmless CE", "harmless_ce"), ("harmless KL", "kl_harmless")]
    for label, key in rows:
        vals = [col.get(key) for _, col in cols]
        if all(v is None for v in vals):
            continue
        pct = key not in ("harmless_ce", "kl_harmless")
        t.add_row(label, *["-" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.3f}") for v in vals])
    if c.get("components"):
        t.caption = f"components: {c['components']}"
    return t


def planted_circuit(lm: LoadedModel) -> Circuit | None:
    """The backdoor circuit planted by construction in a backdoor organism (None for other models)."""
    import torch

    from safecircuits.hooks import d_mlp

    pl = lm.info.get("metrics", {}).get("planted")
    if not pl:
        return None
    c = lm.model.cfg
    heads = torch.zeros(c.n_layers, c.n_heads, dtype=torch.bool)
    neurons = torch.zeros(c.n_layers, d_mlp(lm.model), dtype=torch.bool)
    for l, h in pl["heads"]:
        heads[l, h] = True
    for l, i in pl["neurons"]:
        neurons[l, i] = True
    return Circuit(heads, neurons, provenance={"model": lm.name, "objective": "planted"})
