"""Figures of the harmful fine-tuning benchmark: harmful score vs fine-tune accuracy per method,
one panel per harmful ratio p, as a self-contained HTML file (plotly.js embedded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from safecircuits.errors import InputError

__all__ = ["benchmark_figure", "write_benchmark_html"]


def benchmark_figure(results: dict[str, Any], title: str | None = None) -> go.Figure:
    """Harmful score (y, lower is safer) vs accuracy (x, higher is better); error bars are the std over seeds."""
    from safecircuits.finetune.benchmark import aggregate

    agg = results.get("aggregate") or aggregate(results)
    if not agg:
        raise InputError("the benchmark results hold no finished runs: nothing to plot")
    ratios = sorted({r["ratio"] for r in agg})
    methods = list(dict.fromkeys(r["method"] for r in agg))
    colours = {m: qualitative.Plotly[i % len(qualitative.Plotly)] for i, m in enumerate(methods)}
    fig = make_subplots(rows=1, cols=len(ratios), shared_yaxes=True, subplot_titles=[f"p = {p:g}" for p in ratios],
                        horizontal_spacing=0.03)
    for col, p in enumerate(ratios, start=1):
        for m in methods:
            r = next((x for x in agg if x["method"] == m and x["ratio"] == p), None)
            if r is None:
                continue
            fig.add_trace(go.Scatter(
                x=[100 * r["accuracy"]], y=[100 * r["harmful_score"]], mode="markers", name=m, legendgroup=m, showlegend=col == 1,
                marker={"size": 11, "color": colours[m], "line": {"width": 1, "color": "black"}},
                error_x={"type": "data", "array": [100 * r.get("accuracy_std", 0.0)], "visible": True},
                error_y={"type": "data", "array": [100 * r.get("harmful_score_std", 0.0)], "visible": True},
                hovertemplate=(f"<b>{m}</b> p={p:g}<br>accuracy %{{x:.1f}}%<br>harmful score %{{y:.1f}}%"
                               f"<br>harmless KL {r.get('harmless_kl', float('nan')):.3f}<br>seeds {r['n_seeds']}<extra></extra>"),
            ), row=1, col=col)
        fig.update_xaxes(title_text="accuracy (%)", range=[-5, 105], row=1, col=col)
    fig.update_yaxes(title_text="harmful score (%)", range=[-5, 105], row=1, col=1)
    s = results.get("settings", {})
    fig.update_layout(
        title=title or f"Harmful fine-tuning: {s.get('model', '')}, task {s.get('task', '')} (mean ± std over seeds; top-right = unsafe, bottom-right = ideal)",
        height=420, width=max(700, 300 * len(ratios)), template="plotly_white", legend={"title": "method"},
    )
    return fig


def write_benchmark_html(results: dict[str, Any] | str | Path, path: str | Path, markdown: str | None = None) -> Path:
    """One self-contained HTML file: the figure, the tables (as preformatted markdown) and the settings."""
    from safecircuits.finetune.benchmark import markdown_table

    if not isinstance(results, dict):
        results = json.loads(Path(results).read_text())
    fig = benchmark_figure(results)
    md = markdown if markdown is not None else markdown_table(results)
    body = fig.to_html(full_html=False, include_plotlyjs=True)
    esc = md.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    settings = json.dumps(results.get("settings", {}), indent=1).replace("<", "&lt;")
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>safecircuits fine-tuning benchmark</title></head>"
            f"<body style='font-family:sans-serif'>{body}<h3>Tables</h3><pre>{esc}</pre><h3>Settings</h3><pre>{settings}</pre></body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
