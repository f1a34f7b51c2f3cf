"""Subspace geometry figure: a heatmap of pairwise overlaps and the principal-angle cosines of every pair."""

from __future__ import annotations

import re
from pathlib import Path

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from safecircuits.subspaces.geometry import GeometryReport
from safecircuits.viz._html import esc, fig_html, page_html, write_atomic

__all__ = ["geometry_figure", "subspace_label", "write_geometry_html"]

_SPACING = 0.2  # between the panels: room for the heatmap's colour bar and the right panel's y axis


def subspace_label(name: str, k: int) -> str:
    """``name (k=K)``, unless the name already states that dimension (``"activation PCA (k=4)"``
    stays as it is)."""
    if re.search(rf"\bk\s*=\s*{k}\b", name):
        return name
    return f"{name} (k={k})"


def _wrap(text: str, width: int = 22) -> str:
    """Break a long axis label at spaces into lines of at most about ``width`` characters."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


def geometry_figure(report: GeometryReport, title: str | None = None) -> go.Figure:
    """Left: overlap (mean squared principal-angle cosine) of every pair; rows are labelled
    ``S1: name (k=K)``, columns ``S1``..``Sn``; its colour bar sits in the gap between the panels.
    Right: the principal-angle cosines of each pair (dotted: the rms cosine of random subspaces of
    the same dimensions)."""
    names = [subspace_label(n, report.dims[n]) for n in report.names]
    keys = [f"S{i + 1}" for i in range(len(names))]  # short column labels: long names would collide
    ylabels = [_wrap(f"{k}: {n}", 26) for k, n in zip(keys, names, strict=True)]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=_SPACING,
                        subplot_titles=("overlap (mean cos² of principal angles)", "principal-angle cosines per pair"))
    text = [[f"{v:.2f}" for v in row] for row in report.overlap]
    hover = [[f"{ka}: {esc(a)}<br>{kb}: {esc(b)}" for kb, b in zip(keys, names, strict=True)] for ka, a in zip(keys, names, strict=True)]
    left_end = fig.layout.xaxis.domain[1]
    fig.add_trace(go.Heatmap(z=report.overlap, x=keys, y=ylabels, zmin=0, zmax=1, colorscale="Viridis", text=text,
                             texttemplate="%{text}", customdata=hover, name="overlap",
                             hovertemplate="%{customdata}<br>overlap %{z:.3f}<extra></extra>",
                             colorbar={"x": left_end + 0.01, "xanchor": "left", "len": 0.9, "thickness": 12,
                                       "title": {"text": "overlap", "side": "right"}}), row=1, col=1)
    for i, (pair, cos) in enumerate(report.cosines.items()):
        colour = qualitative.Plotly[i % len(qualitative.Plotly)]
        a, b = pair.split(" | ", 1) if " | " in pair else (pair, "")
        shown = f"{subspace_label(a, report.dims[a])} | {subspace_label(b, report.dims[b])}" if b and a in report.dims and b in report.dims else pair
        fig.add_trace(go.Scatter(x=list(range(1, len(cos) + 1)), y=cos, mode="lines+markers", name=esc(shown), legendgroup=pair,
                                 line={"color": colour}, hovertemplate=f"{esc(shown)}<br>angle %{{x}}: cos %{{y:.3f}}<extra></extra>"),
                      row=1, col=2)
        chance = report.chance.get(pair)
        if chance is not None:
            fig.add_trace(go.Scatter(x=[1, max(len(cos), 1)], y=[chance**0.5] * 2, mode="lines", showlegend=False, legendgroup=pair,
                                     line={"color": colour, "dash": "dot", "width": 1},
                                     hovertemplate=f"{esc(shown)}: random-subspace rms cosine {chance ** 0.5:.3f}<extra></extra>"),
                          row=1, col=2)
    n_angles = max((len(c) for c in report.cosines.values()), default=1)
    fig.update_xaxes(title_text="principal angle index", tick0=1, dtick=1 if n_angles <= 12 else None, tickformat=",d", row=1, col=2)
    fig.update_yaxes(title_text="cosine", range=[0, 1.02], row=1, col=2)
    fig.update_xaxes(tickangle=0, row=1, col=1)
    model = report.provenance.get("model", "")
    head = title or f"Safety subspace geometry{f' of {esc(model)}' if model else ''}"
    fig.update_layout(title={"text": f"{head}<br><sup>d = {report.d}; dotted: random subspaces of the same dimensions</sup>"},
                      height=640, margin={"t": 100, "b": 60},
                      legend={"font": {"size": 11}, "orientation": "h", "y": -0.18, "x": 0})
    return fig


def write_geometry_html(report: GeometryReport, path: str | Path, title: str | None = None) -> Path:
    """Write :func:`geometry_figure` as one self-contained HTML file (plotly.js embedded, works offline)."""
    fig = geometry_figure(report, title)
    rows = "".join(f"<tr><th>S{i + 1}</th><td>{esc(subspace_label(n, report.dims[n]))}: {report.dims[n]} "
                   f"direction{'s' if report.dims[n] != 1 else ''}</td></tr>" for i, n in enumerate(report.names))
    body = f"{fig_html(fig)}\n<h2>Subspaces</h2>\n<table class=\"prov\">{rows}</table>"
    return write_atomic(path, page_html(title or "safecircuits subspace geometry", body))
