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
    not_validated,
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
    n: int | None = typer.Option(None, help="prompts per class and split (default: the model profile's size; organisms: whole splits)"),
    kl_threshold: float = typer.Option(0.1, help="discard candidates whose ablation moves harmless next-token KL above this"),
    prune: float = typer.Option(0.2, help="discard candidates in this last fraction of layers (models with >= --prune-min-layers layers)"),
    prune_min_layers: int = typer.Option(8, help="shallower models discard only the final residual stream"),
    min_asr_rise: float = typer.Option(0.5, help="validation: ablation must raise the harmful val ASR by at least this"),
    coeff: float | None = typer.Option(None, help="activation-addition coefficient (default: chosen on val harmless prompts)"),
    positions: str = typer.Option("auto", help="activation addition at 'all' positions (Arditi), the 'prompt' only, or 'auto' "
                                  "(chosen on val with the coefficient)"),
    max_new_tokens: int = typer.Option(32, help="generation length for validation, the addition choice and the held-out effects"),
    seed: int = typer.Option(0, help="seed (prompt sampling)"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Find the refusal direction (difference of means, selected and validated on val), choose the
    activation addition on val, and print the effects of ablation, activation addition and weight
    orthogonalisation on held-out prompts. Exits with status 3 when the direction fails validation."""
    from safecircuits.subspaces.protocol import refusal_protocol
    from safecircuits.subspaces.refusal import RefusalConfig

    if out.suffix not in (".pt", ".safetensors"):
        fail(f"--out must end in .pt or .safetensors, got {out.name!r}")
    if positions not in ("all", "prompt", "auto"):
        fail(f"--positions must be 'all', 'prompt' or 'auto', got {positions!r}")
    if coeff is not None and positions == "auto":
        positions = "all"
    if coeff is None and positions != "auto":
        fail("--positions all/prompt fixes the addition: give --coeff too (or leave both to be chosen on val)")
    if n is not None and n < 8:
        fail(f"--n must be at least 8 prompts per class, got {n}")
    layer_list = parse_ints(layers, "layers")
    lm = load(model, device, dtype)
    cfg = RefusalConfig(layers=tuple(layer_list) if layer_list else None, kl_threshold=kl_threshold, prune_layer_fraction=prune,
                        prune_min_layers=prune_min_layers, min_asr_rise=min_asr_rise, n_prompts="auto" if n is None else n,
                        seed=seed, max_new_tokens=max_new_tokens, progress=True)
    res = refusal_protocol(lm, cfg, coeff=coeff, positions=None if coeff is None else positions, max_new_tokens=max_new_tokens)
    rd, effects = res.direction, res.effects
    if effects is None:  # pragma: no cover - refusal_protocol measures the test effects unless test=False
        raise RuntimeError("refusal_protocol returned no test effects")
    rd.save(out)
    v = rd.validation
    console.print(f"refusal direction of {lm.name}: layer {rd.layer} ({rd.provenance['hook']}), position {rd.pos}, "
                  f"norm {rd.norm:.3g}; saved to {out}")
    console.print(f"validation (val): harmful ASR {pct(v.get('val_asr'))} -> {pct(v.get('val_asr_ablated'))} under ablation "
                  f"(needs +{100 * min_asr_rise:g} points): {'passed' if rd.validated else 'FAILED'}")
    how = "chosen on val" if coeff is None else "given"
    t = refusal_effects_table(rd, effects, res.addition["coeff"], res.addition["positions"], note=how)
    console.print(t)
    write_json(json_path, {"model": lm.name, "direction_file": str(out), "layer": rd.layer, "pos": rd.pos, "norm": rd.norm,
                            "validated": rd.validated, "reason": rd.reason, "validation": rd.validation,
                            "addition": res.addition, "addition_val_grid": res.addition_grid,
                            "candidates": rd.candidates, "effects": effects, "provenance": rd.provenance})
    if not rd.validated:
        not_validated("the refusal direction", rd.reason)


@command(app, "weights")
def weights_cmd(
    base: str = typer.Option(..., help="the base (pre-alignment) model"),
    aligned: str = typer.Option(..., help="the aligned model (fine-tuned from the base)"),
    out: Path = typer.Option(..., help="where to save the WeightDeltaSubspace (.pt or .safetensors)"),
    rank: str = typer.Option("auto", help="rank r of the truncated SVD per module; 'auto' = the smallest rank whose keep model "
                             "(W_base + P_r(V)) refuses the harmful val prompts within 2 points of the aligned model"),
    kinds: str = typer.Option("W_Q,W_K,W_V,W_O,W_in,W_gate,W_out", help="weight kinds, comma-separated"),
    n: int | None = typer.Option(None, help="--rank auto: val prompts per class (default: the profile's size)"),
    json_path: Path | None = typer.Option(None, "--json", help="also write the per-module energy (and the rank curve) as JSON"),
    device: DeviceOpt = None,
) -> None:
    """Compute the SafeLoRA weight-delta subspace: rank-r SVD of W_aligned - W_base per module. With
    --rank auto (default) the rank is chosen and validated on val; exits with status 3 when no rank passes."""
    from safecircuits.models.weights import WEIGHT_KINDS
    from safecircuits.subspaces.protocol import KEEP_TOLERANCE, weight_delta_protocol
    from safecircuits.subspaces.weights import WeightDeltaSubspace

    if out.suffix not in (".pt", ".safetensors"):
        fail(f"--out must end in .pt or .safetensors, got {out.name!r}")
    r_int = None
    if rank != "auto":
        try:
            r_int = int(rank)
        except ValueError:
            fail(f"--rank must be a positive integer or 'auto', got {rank!r}")
        if r_int < 1:
            fail(f"--rank must be a positive integer or 'auto', got {rank}")
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    bad = sorted(set(kind_list) - set(WEIGHT_KINDS))
    if bad:
        fail(f"unknown weight kinds {bad}: use some of {', '.join(WEIGHT_KINDS)}")
    # weight deltas are small differences of large weights: compared in float32, never in bf16
    a, b = load(aligned, device, "float32"), load(base, device, "float32")
    res = None
    if r_int is None:
        res = weight_delta_protocol(a, b, kinds=kind_list, n="auto" if n is None else n, full_curve=False, test=False, progress=True)
        sub = res.subspace
        t = Table(title=f"rank choice on val (keep = W_base + P_r(V); aligned harmful refusal {pct(res.aligned_val['harmful_refusal'])}, "
                        f"tolerance {100 * KEEP_TOLERANCE:g} points)")
        for col in ("rank", "mean energy", "keep: harmful refusal", "keep: harmless compliance", "remove: ASR", "remove: harmless compliance"):
            t.add_column(col)
        for row in res.curve:
            kv, rv = row["keep"]["val"], row["remove"]["val"]
            t.add_row(str(row["rank"]), f"{row['mean_energy']:.2f}", pct(kv["harmful_refusal"]), pct(kv["harmless_compliance"]),
                      pct(rv["asr"]), pct(rv["harmless_compliance"]))
        console.print(t)
    else:
        sub = WeightDeltaSubspace.from_models(a, b, rank=r_int, kinds=kind_list, progress=True)
    sub.save(out)
    t = Table(title=f"weight-delta subspace {a.name} - {b.name}, rank {sub.rank}")
    for col in ("module", "||V||_F", "energy captured"):
        t.add_column(col)
    for name in sub.names:
        t.add_row(name, f"{sub.delta_norm[name]:.4g}", pct(sub.energy[name]))
    console.print(t)
    console.print(f"saved {len(sub.names)} modules to {out}")
    payload = {"aligned": a.name, "base": b.name, "rank": sub.rank, "energy": sub.energy, "delta_norm": sub.delta_norm,
               "file": str(out), "provenance": sub.provenance}
    if res is not None:
        payload.update(validated=res.validated, reason=res.reason, chosen_rank=res.rank, aligned_val=res.aligned_val, curve=res.curve)
    write_json(json_path, payload)
    if res is not None:
        if res.validated:
            console.print(f"rank {res.rank} chosen on val: its keep model refuses "
                          f"{pct(next(c for c in res.curve if c['rank'] == res.rank)['keep']['val']['harmful_refusal'])} of harmful val prompts")
        else:
            not_validated("the weight-delta rank choice", res.reason)


def refusal_effects_table(rd, effects: dict[str, Any], coeff: float, positions: str, note: str = "") -> Table:
    """A rich table of :func:`intervention_effects` (used by `subspace refusal` and the demo). A
    direction that failed validation gets a FAILED title and row."""
    failed = getattr(rd, "validated", None) is False
    title = f"held-out effects (judge: {effects['judge']}, {effects['n_harmful']} harmful / {effects['n_harmless']} harmless)"
    if failed:
        title = "FAILED validation on val - " + title
    t = Table(title=title)
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
              pct(a["harmless"]["compliance_rate"]), f"layer {rd.layer}" + (f", {note}" if note else ""))
    if failed:
        t.add_row("FAILED", "-", "-", "-", "-", "not validated: " + (rd.reason or "")[:120])
    return t
