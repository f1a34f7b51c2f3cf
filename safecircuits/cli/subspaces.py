"""``safecircuits subspace refusal`` and ``safecircuits subspace weights``: the refusal direction and
the weight-delta (SafeLoRA) subspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from safecircuits.cli._common import (
    DeviceOpt,
    DtypeOpt,
    command,
    console,
    fail,
    load,
    parse_ints,
    pct,
    write_json,
)

app = typer.Typer(help="Safety subspaces: the refusal direction and the weight-delta (SafeLoRA) subspace.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)


@command(app, "refusal")
def refusal_cmd(
    model: str = typer.Option(..., help="model name or directory (organism:aligned, smollm2-135m-instruct, ...)"),
    out: Path = typer.Option(..., help="where to save the RefusalDirection (.pt or .safetensors)"),
    json_path: Path | None = typer.Option(None, "--json", help="also write the candidate scores and intervention effects as JSON"),
    layers: str | None = typer.Option(None, help="residual layers to score, comma-separated (default all)"),
    n: int | None = typer.Option(None, help="prompts per class and split (default: the model profile's size)"),
    kl_threshold: float = typer.Option(0.1, help="discard candidates whose ablation moves harmless next-token KL above this"),
    prune: float = typer.Option(0.2, help="discard candidates in this last fraction of layers"),
    coeff: float = typer.Option(1.0, help="activation-addition coefficient for the reported effect"),
    positions: str = typer.Option("all", help="activation addition at 'all' positions (Arditi) or the 'prompt' only"),
    max_new_tokens: int = typer.Option(32, help="generation length for the held-out effects"),
    seed: int = typer.Option(0, help="seed (prompt sampling)"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Find the refusal direction (difference of means, selected under ablation) and print its
    layer/position and the effects of ablation, activation addition and weight orthogonalisation on held-out prompts."""
    from safecircuits.subspaces.effects import intervention_effects
    from safecircuits.subspaces.refusal import RefusalConfig, find_refusal_direction

    if out.suffix not in (".pt", ".safetensors"):
        fail(f"--out must end in .pt or .safetensors, got {out.name!r}")
    if positions not in ("all", "prompt"):
        fail(f"--positions must be 'all' or 'prompt', got {positions!r}")
    if n is not None and n < 8:
        fail(f"--n must be at least 8 prompts per class, got {n}")
    layer_list = parse_ints(layers, "layers")
    lm = load(model, device, dtype)
    prof = lm.profile
    size = n if n is not None else prof.sizes["refusal"]
    cfg = RefusalConfig(layers=tuple(layer_list) if layer_list else None, kl_threshold=kl_threshold, prune_layer_fraction=prune,
                        n_prompts=size, seed=seed, progress=True)
    rd = find_refusal_direction(lm, config=cfg)
    rd.save(out)
    ht, bt = prof.prompts("test", "harmful", n=size, seed=seed), prof.prompts("test", "harmless", n=size, seed=seed)
    effects = intervention_effects(lm.model, lm.chat, rd, ht, bt, prof.judge(lm), coeff=coeff, positions=positions,
                                   max_new_tokens=max_new_tokens)
    console.print(f"refusal direction of {lm.name}: layer {rd.layer} ({rd.provenance['hook']}), position {rd.pos}, "
                  f"norm {rd.norm:.3g}; saved to {out}")
    t = refusal_effects_table(rd, effects, coeff, positions)
    console.print(t)
    write_json(json_path, {"model": lm.name, "direction_file": str(out), "layer": rd.layer, "pos": rd.pos, "norm": rd.norm,
                            "candidates": rd.candidates, "effects": effects, "provenance": rd.provenance})


@command(app, "weights")
def weights_cmd(
    base: str = typer.Option(..., help="the base (pre-alignment) model"),
    aligned: str = typer.Option(..., help="the aligned model (fine-tuned from the base)"),
    out: Path = typer.Option(..., help="where to save the WeightDeltaSubspace (.pt or .safetensors)"),
    rank: int = typer.Option(8, help="rank r of the truncated SVD per module"),
    kinds: str = typer.Option("W_Q,W_K,W_V,W_O,W_in,W_gate,W_out", help="weight kinds, comma-separated"),
    json_path: Path | None = typer.Option(None, "--json", help="also write the per-module energy as JSON"),
    device: DeviceOpt = None,
) -> None:
    """Compute the SafeLoRA weight-delta subspace: rank-r SVD of W_aligned - W_base per module."""
    from safecircuits.subspaces.weights import WeightDeltaSubspace

    if out.suffix not in (".pt", ".safetensors"):
        fail(f"--out must end in .pt or .safetensors, got {out.name!r}")
    if rank < 1:
        fail(f"--rank must be a positive integer, got {rank}")
    # weight deltas are small differences of large weights: compared in float32, never in bf16
    a, b = load(aligned, device, "float32"), load(base, device, "float32")
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    sub = WeightDeltaSubspace.from_models(a, b, rank=rank, kinds=kind_list, progress=True)
    sub.save(out)
    t = Table(title=f"weight-delta subspace {a.name} - {b.name}, rank {rank}")
    for col in ("module", "||V||_F", "energy captured"):
        t.add_column(col)
    for name in sub.names:
        t.add_row(name, f"{sub.delta_norm[name]:.4g}", pct(sub.energy[name]))
    console.print(t)
    console.print(f"saved {len(sub.names)} modules to {out}")
    write_json(json_path, {"aligned": a.name, "base": b.name, "rank": rank, "energy": sub.energy, "delta_norm": sub.delta_norm,
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
         f"greedy = ablation on {pct(effects['orthogonalized']['greedy_agreement_with_ablation'])}"),
    ):
        e = effects[key]
        t.add_row(name, pct(e["harmful"]["refusal_rate"]), pct(e["harmful"]["compliance_rate"]),
                  pct(e["harmless"]["refusal_rate"]), pct(e["harmless"]["compliance_rate"]), note)
    a = effects["addition"]
    t.add_row(f"activation addition x{coeff:g} ({positions})", "-", "-", pct(a["harmless"]["refusal_rate"]),
              pct(a["harmless"]["compliance_rate"]), f"layer {rd.layer}")
    return t
