"""Feature dashboard: one self-contained HTML page (plotly.js embedded once) about the top safety
features of a :class:`~safecircuits.features.ranking.FeatureSet`.

Per feature: its scores, the top-activating prompts with token-level highlighting (background
intensity = activation / the feature's max), the histogram of its activation at the last prompt
position split by label (harmful / harmless / triggered), and the change of the logit refusal
score on harmful prompts when the feature alone is zeroed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import plotly.graph_objects as go
import torch
from sae_lens import SAE

from safecircuits.data.promptset import Label, PromptSet
from safecircuits.errors import InputError
from safecircuits.features.ranking import FeatureSet, prompt_feature_acts
from safecircuits.models import LoadedModel
from safecircuits.viz._html import esc as _esc
from safecircuits.viz._html import fig_html as _fig_html
from safecircuits.viz._html import page_html, write_atomic

__all__ = ["feature_histogram", "refusal_effect_figure", "token_highlight_html", "feature_dashboard_html"]

LABEL_COLOURS = {"harmful": "#d62728", "harmless": "#2ca02c", "triggered": "#9467bd"}
_EXTRA_CSS = """
.tok{padding:1px 2px;margin:0 1px;border-radius:3px;font-family:ui-monospace,monospace;font-size:.85em}
.ex{margin:.2em 0;line-height:1.9} .lab{display:inline-block;width:6em;color:#555;font-size:.8em}
.feat{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;margin:1em 0}
"""


def token_highlight_html(tokens: list[str], acts: list[float], vmax: float) -> str:
    """Tokens as spans whose red background intensity is activation / vmax (hover: the value)."""
    out = []
    for t, a in zip(tokens, acts, strict=True):
        alpha = 0.0 if vmax <= 0 else max(0.0, min(1.0, a / vmax))
        out.append(f'<span class="tok" style="background:rgba(214,39,40,{alpha:.3f})" title="{a:.3f}">{_esc(t)}</span>')
    return "".join(out)


def feature_histogram(values: dict[str, list[float]], feature: int) -> go.Figure:
    fig = go.Figure()
    for lab, xs in values.items():
        fig.add_trace(go.Histogram(x=xs, name=lab, opacity=0.6, marker_color=LABEL_COLOURS.get(lab), nbinsx=30))
    fig.update_layout(barmode="overlay", height=280, margin=dict(l=50, r=10, t=50, b=45),
                      title=f"feature {feature}: activation at the last prompt position", xaxis_title="activation",
                      yaxis_title="prompts", legend_title_text="prompts")
    return fig


def refusal_effect_figure(effects: dict[int, float]) -> go.Figure:
    ids = list(effects)
    fig = go.Figure(go.Bar(x=[str(i) for i in ids], y=[effects[i] for i in ids], marker_color="#1f77b4",
                           hovertemplate="feature %{x}<br>Δ refusal score %{y:.3f}<extra></extra>"))
    fig.update_layout(height=320, title="Δ mean logit refusal score on harmful prompts, each feature zeroed alone",
                      xaxis_title="feature", yaxis_title="Δ refusal score", xaxis_type="category", margin=dict(l=60, r=10, t=60, b=45))
    return fig


def feature_dashboard_html(
    lm: LoadedModel,
    sae: SAE,
    fset: FeatureSet,
    prompts: PromptSet,
    path: str | Path,
    k: int = 10,
    n_examples: int = 6,
    max_prompts_per_label: int = 200,
    title: str | None = None,
) -> Path:
    """Write the dashboard for the top-k features of `fset` (activations on `prompts`)."""
    from safecircuits.features.intervene import single_feature_refusal_effects

    top = fset.top(k)
    if not top:
        raise InputError("the dashboard needs k >= 1 features")
    tok = lm.chat.tokenizer
    per_label: dict[str, tuple[list[str], torch.Tensor, torch.Tensor]] = {}
    for label in Label:
        ps = prompts.filter(label=label).sample(max_prompts_per_label)
        if len(ps):
            acts, mask = prompt_feature_acts(lm.model, lm.chat, sae, fset.hook, ps.prompts)
            per_label[label.value] = (ps.prompts, acts[..., top], mask)
    harmful = prompts.filter(label=Label.HARMFUL).sample(64)
    effects = single_feature_refusal_effects(lm, sae, fset.hook, top, harmful) if len(harmful) else {}

    parts = [_fig_html(refusal_effect_figure(effects))] if effects else []
    for j, fid in enumerate(top):
        parts.append(f'<section class="feat" id="f{fid}"><h2>#{j + 1}: feature {fid}</h2>')
        st = ", ".join(f"{k_} {float(v[fid]):.3f}" for k_, v in fset.stats.items() if k_.startswith("mean_post"))
        eff = f"; Δ refusal score when zeroed: {effects[fid]:+.3f}" if fid in effects else ""
        parts.append(f'<p class="meta">{_esc(fset.method)} score {float(fset.scores[fid]):.4g}; firing frequency '
                     f"{float(fset.frequency[fid]):.4f}; {_esc(st)}{_esc(eff)}</p>")
        rows = []
        for lab, (texts, acts, mask) in per_label.items():
            a = acts[..., j]
            for i in range(len(texts)):
                rows.append((float(a[i][mask[i].bool()].max()), lab, i))
        rows.sort(key=lambda r: -r[0])
        vmax = rows[0][0] if rows else 0.0
        parts.append("<h3>top-activating prompts</h3>")
        for val, lab, i in rows[:n_examples]:
            texts, acts, mask = per_label[lab]
            real = mask[i].bool()
            ids = lm.chat.prompt_ids(texts[i])
            toks = tok.convert_ids_to_tokens(ids)
            vals = acts[i][real][:, j].tolist()
            parts.append(f'<div class="ex"><span class="lab">{_esc(lab)} {val:.2f}</span>{token_highlight_html(toks, vals, vmax)}</div>')
        hist = {lab: acts[:, -1, j].tolist() for lab, (_, acts, _) in per_label.items()}
        parts.append(_fig_html(feature_histogram(hist, fid)))
        parts.append("</section>")

    title = title or f"safety features: {fset.provenance.get('model', lm.name)} @ {fset.hook}"
    nav = "".join(f'<a href="#f{f}">{f}</a>' for f in top)
    prov = "".join(f"<tr><th>{_esc(k_)}</th><td>{_esc(v)}</td></tr>" for k_, v in fset.provenance.items() if k_ != "prompts")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"<p class=\"meta\">top {len(top)} features by {_esc(fset.method)} score · generated {stamp} by safecircuits</p>\n"
        f'<table class="prov">{prov}</table>\n<nav>features: {nav}</nav>\n' + "\n".join(parts)
    )
    return write_atomic(path, page_html(title, body, extra_css=_EXTRA_CSS))
