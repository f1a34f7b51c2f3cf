"""``safecircuits subspace ...``: the refusal direction and the weight-delta subspace from the command line.

A typer sub-app; the main CLI registers it with ``app.add_typer(subspaces.cli.app, name="subspace")``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Safety subspaces: the refusal direction and the weight-delta (SafeLoRA) subspace.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
console = Console(width=None if sys.stdout.isatty() else 200)
_ERRORS = (ValueError, FileNotFoundError, RuntimeError, KeyError)


def _fail(msg: str) -> None:
    console.print("[bold red]error:[/] ", end="")
    console.print(msg, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)
    console.print(f"wrote {path}")


def _load(name: str):
    from safecircuits.models import load_model

    try:
        return load_model(name, progress=False)
    except _ERRORS as e:
        _fail(f"cannot load model {name!r}: {e}")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _parse_ints(s: str | None, what: str) -> list[int] | None:
    if s is None or not s.strip():
        return None
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        _fail(f"--{what} must be comma-separated integers like '1,2', got {s!r}")
    return None


def _prompt_splits(lm, n: int, seed: int):
    """(train, val, test) x (harmful, harmless) PromptSets for an organism or a real model."""
    from safecircuits.data.promptset import Label
    from safecircuits.evaluation.report import is_organism

    if is_organism(lm):
        from safecircuits.models.language import Language

        lang = Language(lm.info["organism"]["split_seed"])
        return {s: (lang.prompt_set(s, "harmful"), lang.prompt_set(s, "harmless")) for s in ("train", "val", "test")}
    from safecircuits.data.loaders import load_prompts

    out = {}
    for lab in (Label.HARMFUL, Label.HARMLESS):
        ps = load_prompts(f"synthetic:{lab.value}:{n}", seed=seed).shuffle(seed)
        a, b = len(ps) // 2, (3 * len(ps)) // 4
        out[lab] = (ps[:a], ps[a:b], ps[b:])
    return {s: (out[Label.HARMFUL][i], out[Label.HARMLESS][i]) for i, s in enumerate(("train", "val", "test"))}


@app.command("refusal")
def refusal_cmd(
    model: str = typer.Option(..., help="model name or directory (organism:aligned, smollm2-135m-instruct, ...)"),
    out: Path = typer.Option(..., help="where to save the RefusalDirection (.pt or .safetensors)"),
    json_path: Path | None = typer.Option(None, "--json", help="also write the candidate scores and intervention effects as JSON"),
    layers: str | None = typer.Option(None, help="residual layers to score, comma-separated (default all)"),
    n: int = typer.Option(64, help="real models: synthetic prompts per class (half train, a quarter val, a quarter test)"),
    kl_threshold: float = typer.Option(0.1, help="discard candidates whose ablation moves harmless next-token KL above this"),
    prune: float = typer.Option(0.2, help="discard candidates in this last fraction of layers"),
    coeff: float = typer.Option(1.0, help="activation-addition coefficient for the reported effect"),
    positions: str = typer.Option("all", help="activation addition at 'all' positions (Arditi) or the 'prompt' only"),
    max_new_tokens: int = typer.Option(32, help="generation length for the held-out effects"),
    seed: int = typer.Option(0, help="seed (prompt sampling for real models)"),
) -> None:
    """Find the refusal direction (difference of means, selected under ablation) and print its
    layer/position and the effects of ablation, activation addition and weight orthogonalisation on held-out prompts."""
    from safecircuits.evaluation.report import default_judge
    from safecircuits.subspaces.effects import intervention_effects
    from safecircuits.subspaces.refusal import find_refusal_direction

    if out.suffix not in (".pt", ".safetensors"):
        _fail(f"--out must end in .pt or .safetensors, got {out.name!r}")
    if positions not in ("all", "prompt"):
        _fail(f"--positions must be 'all' or 'prompt', got {positions!r}")
    if n < 8:
        _fail(f"--n must be at least 8 prompts per class, got {n}")
    layer_list = _parse_ints(layers, "layers")
    lm = _load(model)
    try:
        sp = _prompt_splits(lm, n, seed)
        (h, b), (hv, bv), (ht, bt) = sp["train"], sp["val"], sp["test"]
        rd = find_refusal_direction(lm.model, lm.chat, h, b, hv, bv, layers=layer_list, kl_threshold=kl_threshold,
                                    prune_layer_fraction=prune, model_name=lm.name, seed=seed, progress=True)
        rd.save(out)
        effects = intervention_effects(lm.model, lm.chat, rd, ht, bt, default_judge(lm), coeff=coeff, positions=positions,
                                       max_new_tokens=max_new_tokens)
    except _ERRORS as e:
        _fail(str(e))
    console.print(f"refusal direction of {lm.name}: layer {rd.layer} ({rd.provenance['hook']}), position {rd.pos}, "
                  f"norm {rd.norm:.3g}; saved to {out}")
    t = refusal_effects_table(rd, effects, coeff, positions)
    console.print(t)
    _write_json(json_path, {"model": lm.name, "direction_file": str(out), "layer": rd.layer, "pos": rd.pos, "norm": rd.norm,
                            "candidates": rd.candidates, "effects": effects, "provenance": rd.provenance})


@app.command("weights")
def weights_cmd(
    base: str = typer.Option(..., help="the base (pre-alignment) model"),
    aligned: str = typer.Option(..., help="the aligned model (fine-tuned from the base)"),
    out: Path = typer.Option(..., help="where to save the WeightDeltaSubspace (.pt or .safetensors)"),
    rank: int = typer.Option(8, help="rank r of the truncated SVD per module"),
    kinds: str = typer.Option("W_Q,W_K,W_V,W_O,W_in,W_gate,W_out", help="weight kinds, comma-separated"),
    json_path: Path | None = typer.Option(None, "--json", help="also write the per-module energy as JSON"),
) -> None:
    """Compute the SafeLoRA weight-delta subspace: rank-r SVD of W_aligned - W_base per module."""
    from safecircuits.subspaces.weights import WeightDeltaSubspace

    if out.suffix not in (".pt", ".safetensors"):
        _fail(f"--out must end in .pt or .safetensors, got {out.name!r}")
    if rank < 1:
        _fail(f"--rank must be a positive integer, got {rank}")
    a, b = _load(aligned), _load(base)
    try:
        kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
        sub = WeightDeltaSubspace.from_models(a, b, rank=rank, kinds=kind_list, progress=True)
        sub.save(out)
    except _ERRORS as e:
        _fail(str(e))
    t = Table(title=f"weight-delta subspace {a.name} - {b.name}, rank {rank}")
    for col in ("module", "||V||_F", "energy captured"):
        t.add_column(col)
    for name in sub.names:
        t.add_row(name, f"{sub.delta_norm[name]:.4g}", _pct(sub.energy[name]))
    console.print(t)
    console.print(f"saved {len(sub.names)} modules to {out}")
    _write_json(json_path, {"aligned": a.name, "base": b.name, "rank": rank, "energy": sub.energy, "delta_norm": sub.delta_norm,
                            "file": str(out), "provenance": sub.provenance})


def refusal_effects_table(rd, effects: dict[str, Any], coeff: float, positions: str) -> Table:
    """A rich table of :func:`intervention_effects` (used by `subspace refusal` and the demo)."""
    t = Table(title=f"held-out effects (judge: {effects['judge']}, {effects['n_harmful']} harmful / {effects['n_harmless']} harmless)")
    for col in ("intervention", "harmful refusal", "ASR", "harmless refusal", "harmless compliance", "note"):
        t.add_column(col)
    for name, key, note in (
        ("none", "baseline", ""),
        ("directional ablation", "ablation", f"harmless KL {effects['ablation']['harmless_kl']:.4f}"),
        ("weight orthogonalisation", "orthogonalized",
         f"greedy = ablation on {_pct(effects['orthogonalized']['greedy_agreement_with_ablation'])}"),
    ):
        e = effects[key]
        t.add_row(name, _pct(e["harmful"]["refusal_rate"]), _pct(e["harmful"]["compliance_rate"]),
                  _pct(e["harmless"]["refusal_rate"]), _pct(e["harmless"]["compliance_rate"]), note)
    a = effects["addition"]
    t.add_row(f"activation addition x{coeff:g} ({positions})", "-", "-", _pct(a["harmless"]["refusal_rate"]),
              _pct(a["harmless"]["compliance_rate"]), f"layer {rd.layer}")
    return t
