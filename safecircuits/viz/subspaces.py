"""Subspace geometry figure: a heatmap of pairwise overlaps and the principal-angle cosines of every pair."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from safecircuits.subspaces.geometry import GeometryReport

__all__ = ["geometry_figure", "write_geometry_html"]


def geometry_figure(report: GeometryReport, title: str | None = None) -> go.Figure:
    """Left: overlap (mean squared principal-angle cosine) of every pair, with the subspace
    dimensions in the labels. Right: the principal-angle cosines of each pair (dashed: the
    expected overlap of random subspaces of the same dimensions)."""
    labels = [f"{n} (k={report.dims[n]})" for n in report.names]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55],
                        subplot_titles=("overlap (mean cos² of principal angles)", "principal-angle cosines per pair"))
    text = [[f"{v:.2f}" for v in row] for row in report.overlap]
    fig.add_trace(go.Heatmap(z=report.overlap, x=labels, y=labels, zmin=0, zmax=1, colorscale="Viridis", text=text,
                             texttemplate="%{text}", hovertemplate="%{y}<br>%{x}<br>overlap %{z:.3f}<extra></extra>",
                             colorbar={"x": 0.42, "len": 0.9}), row=1, col=1)
    for i, (pair, cos) in enumerate(report.cosines.items()):
        colour = qualitative.Plotly[i % len(qualitative.Plotly)]
        fig.add_trace(go.Scatter(x=list(range(1, len(cos) + 1)), y=cos, mode="lines+markers", name=pair,
                                 line={"color": colour}, hovertemplate=f"{pair}<br>angle %{{x}}: cos %{{y:.3f}}<extra></extra>"),
                      row=1, col=2)
        chance = report.chance.get(pair)
        if chance is not None:
            fig.add_trace(go.Scatter(x=[1, max(len(cos), 1)], y=[chance**0.5] * 2, mode="lines", showlegend=False,
                                     line={"color": colour, "dash": "dot", "width": 1},
                                     hovertemplate=f"{pair}: random-subspace rms cosine {chance ** 0.5:.3f}<extra></extra>"),
                          row=1, col=2)
    fig.update_xaxes(title_text="principal angle index", row=1, col=2)
    fig.update_yaxes(title_text="cosine", range=[0, 1.02], row=1, col=2)
    model = report.provenance.get("model", "")
    fig.update_layout(title=title or f"Safety subspace geometry {model} (d = {report.d})", height=520, width=1200,
                      legend={"font": {"size": 10}})
    return fig


def write_geometry_html(report: GeometryReport, path: str | Path, title: str | None = None) -> Path:
    """Write :func:`geometry_figure` as one self-contained HTML file (plotly.js embedded, works offline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    geometry_figure(report, title).write_html(str(tmp), include_plotlyjs=True, full_html=True)
    tmp.replace(path)
    return path
