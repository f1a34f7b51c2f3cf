"""Figures of the harmful fine-tuning benchmark: harmful score vs fine-tune accuracy per method,
one panel per harmful ratio p, as a self-contained HTML file (plotly.js embedded) with the tables
rendered as HTML tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from safecircuits.errors import InputError
from safecircuits.viz._html import esc, fig_html, markdown_html, page_html, write_atomic

__all__ = ["benchmark_figure", "write_benchmark_html"]

SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "triangle-down", "cross", "pentagon", "hexagon")
NEAR = 2.0  # percentage points: points closer than this on both axes are drawn apart
SPREAD = 3.0  # percentage points between points drawn apart


def _spread(points: list[tuple[float, float]]) -> list[float]:
    """Horizontal offsets (in percentage points) that draw apart points that would hide each other:
    each group of points closer than ``NEAR`` on both axes (chained) is spread symmetrically around
    its true position, in the given order, ``SPREAD`` apart. Points alone get offset 0."""
    n = len(points)
    group = list(range(n))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i in range(n):
        for j in range(i):
            if abs(points[i][0] - points[j][0]) < NEAR and abs(points[i][1] - points[j][1]) < NEAR:
                group[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    out = [0.0] * n
    for idx in members.values():
        for k, i in enumerate(idx):
            out[i] = (k - (len(idx) - 1) / 2) * SPREAD
    return out


def benchmark_figure(results: dict[str, Any], title: str | None = None) -> go.Figure:
    """Harmful score (y, lower is safer) vs accuracy (x, higher is better); error bars are the std over seeds.

    Every method has its own colour and marker symbol and one legend entry. Points that would hide
    each other (e.g. two methods with identical scores) are drawn slightly apart horizontally; the
    hover shows the true values and says so.
    """
    from safecircuits.finetune.benchmark import aggregate

    agg = results.get("aggregate") or aggregate(results)
    if not agg:
        raise InputError("the benchmark results hold no finished runs: nothing to plot")
    ratios = sorted({r["ratio"] for r in agg})
    methods = list(dict.fromkeys(r["method"] for r in agg))
    colours = {m: qualitative.Plotly[i % len(qualitative.Plotly)] for i, m in enumerate(methods)}
    symbols = {m: SYMBOLS[i % len(SYMBOLS)] for i, m in enumerate(methods)}
    fig = make_subplots(rows=1, cols=len(ratios), shared_yaxes=True, subplot_titles=[f"harmful ratio p = {p:g}" for p in ratios],
                        horizontal_spacing=0.04)
    in_legend: set[str] = set()
    moved = False
    for col, p in enumerate(ratios, start=1):
        rows = [(m, r) for m in methods if (r := next((x for x in agg if x["method"] == m and x["ratio"] == p), None)) is not None]
        pts = [(100 * r.get("accuracy", float("nan")), 100 * r.get("harmful_score", float("nan"))) for _, r in rows]
        offsets = _spread(pts)
        for (m, r), (x, y), dx in zip(rows, pts, offsets, strict=True):
            note = f"<br><i>drawn {dx:+.1f} points to the side: it coincides with another method</i>" if dx else ""
            moved |= bool(dx)
            fig.add_trace(go.Scatter(
                x=[x + dx], y=[y], mode="markers", name=m, legendgroup=m, showlegend=m not in in_legend,
                marker={"size": 13, "color": colours[m], "symbol": symbols[m], "opacity": 0.9, "line": {"width": 1.5, "color": "black"}},
                error_x={"type": "data", "array": [100 * r.get("accuracy_std", 0.0)], "visible": True, "color": colours[m]},
                error_y={"type": "data", "array": [100 * r.get("harmful_score_std", 0.0)], "visible": True, "color": colours[m]},
                customdata=[[x, y]],
                hovertemplate=(f"<b>{esc(m)}</b> p={p:g}<br>accuracy %{{customdata[0]:.1f}}%<br>harmful score %{{customdata[1]:.1f}}%"
                               f"<br>harmless KL {r.get('harmless_kl', float('nan')):.3f}<br>seeds {r['n_seeds']}{note}<extra></extra>"),
            ), row=1, col=col)
            in_legend.add(m)
        fig.update_xaxes(title_text="fine-tune accuracy (%)", range=[-8, 108], row=1, col=col)
    fig.update_yaxes(title_text="harmful score (%)", range=[-8, 108], row=1, col=1)
    s = results.get("settings", {})
    sub = "mean ± std over seeds; top-right = unsafe, bottom-right = ideal"
    if moved:
        sub += "; coinciding points drawn slightly apart (hover: true values)"
    head = title or f"Harmful fine-tuning: {s.get('model', '')}, task {s.get('task', '')}"
    fig.update_layout(
        title={"text": f"{head}<br><sup>{sub}</sup>"}, height=500, margin={"t": 110, "r": 30},
        template="plotly_white", legend={"title": {"text": "method"}, "itemsizing": "constant"},
    )
    return fig


def _settings_table(settings: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v if isinstance(v, str) else json.dumps(v, default=str))}</td></tr>"
                   for k, v in settings.items())
    return f'<table class="prov">{rows}</table>' if rows else '<p class="meta">none recorded</p>'


def write_benchmark_html(results: dict[str, Any] | str | Path, path: str | Path, markdown: str | None = None,
                         title: str = "safecircuits fine-tuning benchmark") -> Path:
    """One self-contained HTML file: the figure, the tables (``markdown``, by default
    :func:`~safecircuits.finetune.benchmark.markdown_table`, rendered as HTML tables) and the settings."""
    from safecircuits.finetune.benchmark import markdown_table

    data: dict[str, Any] = results if isinstance(results, dict) else json.loads(Path(results).read_text())
    fig = benchmark_figure(data)
    md = markdown if markdown is not None else markdown_table(data)
    body = (f"{fig_html(fig)}\n<h2>Tables</h2>\n{markdown_html(md)}\n"
            f"<h2>Settings</h2>\n{_settings_table(data.get('settings', {}))}")
    return write_atomic(path, page_html(title, body))
