"""Interactive circuit maps (plotly): head heatmaps, neuron bars, training curves, faithfulness
curves, overlaps, and one self-contained offline HTML report that gathers them.

Every figure builder takes plain :class:`~safecircuits.circuits.circuit.Circuit` objects (or the
faithfulness-curve dicts) and returns a ``plotly.graph_objects.Figure``; nothing is shown or written
except by :func:`circuit_report_html`.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from safecircuits.circuits.circuit import Circuit
from safecircuits.errors import InputError, InputTypeError

__all__ = [
    "head_heatmap",
    "neuron_bar",
    "training_curves",
    "faithfulness_figure",
    "overlap_figure",
    "circuit_report_html",
]

PALETTE = qualitative.Plotly
OVERLAP_COLOURS = ("#eeeeee", "#1f77b4", "#d62728", "#9467bd")  # neither / only a / only b / both
IN_CIRCUIT = "in circuit: yes"
NOT_IN_CIRCUIT = "in circuit: no"


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4g}"


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


# -- heads -------------------------------------------------------------------------------------
def head_heatmap(circuit: Circuit, title: str | None = None) -> go.Figure:
    """Layer x head heatmap of head scores (membership when the circuit has no scores).

    Circuit heads are outlined with black rectangles (``layout.shapes``, one per circuit head).
    Hover shows ``L{layer}H{head}``, the score and ``in circuit: yes/no``.
    """
    member = circuit.heads.numpy()
    n_layers, n_heads = member.shape
    has_scores = circuit.head_scores is not None
    z = circuit.head_scores.numpy().astype(np.float64) if circuit.head_scores is not None else member.astype(np.float64)
    text = [
        [
            f"L{ly}H{h}<br>" + (f"score {_fmt(float(z[ly, h]))}<br>" if has_scores else "")
            + (IN_CIRCUIT if member[ly, h] else NOT_IN_CIRCUIT)
            for h in range(n_heads)
        ]
        for ly in range(n_layers)
    ]
    heat = go.Heatmap(
        z=z,
        x=np.arange(n_heads),
        y=np.arange(n_layers),
        text=text,
        hovertemplate="%{text}<extra></extra>",
        colorscale="Viridis" if has_scores else [[0, "#f2f2f2"], [1, "#d62728"]],
        showscale=has_scores,
        zmin=None if has_scores else 0,
        zmax=None if has_scores else 1,
        colorbar={"title": {"text": "score"}} if has_scores else None,
        xgap=1,
        ygap=1,
        name="heads",
    )
    fig = go.Figure(heat)
    for ly, h in circuit.heads.nonzero().tolist():
        fig.add_shape(
            type="rect", x0=h - 0.5, x1=h + 0.5, y0=ly - 0.5, y1=ly + 0.5,
            line={"color": "black", "width": 2.5}, fillcolor="rgba(0,0,0,0)", layer="above",
        )
    sp = circuit.sparsity["heads"]
    what = "score" if has_scores else "membership"
    fig.update_layout(
        title={"text": title or f"Attention heads: {what} ({circuit.n_heads}/{member.size} in circuit, {100 * sp:.1f}%; outlined)"},
        xaxis={"title": {"text": "head"}, "dtick": 1 if n_heads <= 40 else None, "constrain": "domain"},
        yaxis={"title": {"text": "layer"}, "dtick": 1 if n_layers <= 48 else None},
        height=max(320, 150 + 22 * n_layers),
        margin={"t": 60, "l": 60, "r": 30, "b": 50},
        plot_bgcolor="white",
    )
    return fig


# -- neurons -----------------------------------------------------------------------------------
def neuron_bar(circuit: Circuit, top_per_layer: int = 200, title: str | None = None) -> go.Figure:
    """Circuit neurons per layer (bar); with scores, also a strip of the ``top_per_layer``
    highest-scoring neurons of each layer (hover names them ``L{l}N{i}``), split into two traces:
    in the circuit and not.

    Traces: 1 bar, plus 2 scatters when the circuit has neuron scores.
    """
    if top_per_layer < 1:
        raise InputError(f"top_per_layer must be >= 1, got {top_per_layer}")
    member = circuit.neurons.numpy()
    n_layers, d_mlp = member.shape
    counts = member.sum(axis=1)
    share = counts / d_mlp if d_mlp else np.zeros(n_layers)
    layers = np.arange(n_layers)
    bar = go.Bar(
        x=layers,
        y=counts,
        customdata=np.stack([share * 100, np.full(n_layers, d_mlp)], axis=1),
        hovertemplate="layer %{x}<br>%{y} of %{customdata[1]} neurons in circuit (%{customdata[0]:.2f}% of the layer)<extra></extra>",
        marker={"color": "#d62728"},
        name="neurons in circuit",
        showlegend=False,
    )
    n_total = circuit.n_neurons
    head = title or f"MLP neurons: {n_total}/{member.size} in circuit ({100 * circuit.sparsity['neurons']:.2f}%)"
    if circuit.neuron_scores is None or d_mlp == 0:
        fig = go.Figure(bar)
        fig.update_layout(
            title={"text": head},
            xaxis={"title": {"text": "layer"}, "dtick": 1 if n_layers <= 48 else None},
            yaxis={"title": {"text": "neurons in circuit"}},
            height=360,
        )
        return fig

    k = min(top_per_layer, d_mlp)
    scores = circuit.neuron_scores.numpy().astype(np.float64)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # [n_layers, k]
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.35, 0.35, size=order.shape)
    pts: dict[bool, dict[str, list[Any]]] = {True: {"x": [], "y": [], "t": []}, False: {"x": [], "y": [], "t": []}}
    for ly in range(n_layers):
        for j, i in enumerate(order[ly].tolist()):
            d = pts[bool(member[ly, i])]
            d["x"].append(ly + float(jitter[ly, j]))
            d["y"].append(float(scores[ly, i]))
            d["t"].append(f"L{ly}N{i}")
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.4, 0.6],
        subplot_titles=("neurons in circuit per layer", f"neuron scores: top {k} per layer"),
    )
    fig.add_trace(bar, row=1, col=1)
    for inside, colour, name in ((True, "#d62728", "in circuit"), (False, "#7f7f7f", "not in circuit")):
        d = pts[inside]
        fig.add_trace(
            go.Scatter(
                x=np.asarray(d["x"], dtype=np.float32), y=np.asarray(d["y"], dtype=np.float32), text=d["t"], mode="markers",
                marker={"size": 4, "color": colour, "opacity": 0.7},
                hovertemplate="%{text}<br>score %{y:.4f}<extra>" + name + "</extra>",
                name=name,
            ),
            row=2, col=1,
        )
    fig.update_xaxes(title={"text": "layer"}, dtick=1 if n_layers <= 48 else None, row=2, col=1)
    fig.update_yaxes(title={"text": "count"}, row=1, col=1)
    fig.update_yaxes(title={"text": "score"}, row=2, col=1)
    fig.update_layout(title={"text": head}, height=620, legend={"orientation": "h", "y": -0.12})
    return fig


# -- training ----------------------------------------------------------------------------------
def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return None if math.isnan(v) or math.isinf(v) else float(v)


def training_curves(circuit: Circuit, title: str | None = None) -> go.Figure | None:
    """Loss terms over steps from ``provenance["history"]``: one line per ``train/<term>``
    (solid) and ``val/<term>`` (dashed, same colour and legend group), plus ``circuit_size`` on a
    secondary y axis (dotted black). None when there is no history.
    """
    history = circuit.provenance.get("history") or []
    history = [r for r in history if isinstance(r, Mapping)]
    if not history:
        return None
    steps = [r.get("step", i) for i, r in enumerate(history)]
    terms: list[str] = []  # term names in order of first appearance
    for r in history:
        for key in r:
            if "/" in key and key.split("/", 1)[0] in ("train", "val"):
                t = key.split("/", 1)[1]
                if t not in terms:
                    terms.append(t)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for i, t in enumerate(terms):
        colour = PALETTE[i % len(PALETTE)]
        first = True
        for split, dash in (("train", "solid"), ("val", "dash")):
            key = f"{split}/{t}"
            if not any(key in r for r in history):
                continue
            fig.add_trace(
                go.Scatter(
                    x=steps, y=[_num(r.get(key)) for r in history], mode="lines+markers",
                    line={"color": colour, "dash": dash}, marker={"size": 4},
                    name=key, legendgroup=t, legendgrouptitle={"text": t} if first else None,
                    hovertemplate=f"{_esc(key)}<br>step %{{x}}<br>%{{y:.4f}}<extra></extra>",
                ),
                secondary_y=False,
            )
            first = False
    if any("circuit_size" in r for r in history):
        fig.add_trace(
            go.Scatter(
                x=steps, y=[_num(r.get("circuit_size")) for r in history], mode="lines",
                line={"color": "black", "dash": "dot", "width": 2}, name="circuit size",
                hovertemplate="step %{x}<br>circuit size %{y}<extra></extra>",
            ),
            secondary_y=True,
        )
        fig.update_yaxes(title={"text": "circuit size (components)"}, secondary_y=True, showgrid=False)
    objective = circuit.provenance.get("objective")
    fig.update_layout(
        title={"text": title or f"Training curves{f' ({_esc(objective)} objective)' if objective else ''}: train solid, val dashed"},
        xaxis={"title": {"text": "step"}},
        height=460,
        legend={"groupclick": "togglegroup"},
    )
    fig.update_yaxes(title={"text": "loss term"}, secondary_y=False)
    return fig


# -- faithfulness ------------------------------------------------------------------------------
def _curves(curve: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    curves = [curve] if isinstance(curve, Mapping) else list(curve)
    if not curves:
        raise InputError("faithfulness_figure needs at least one curve dict")
    for i, c in enumerate(curves):
        if not isinstance(c, Mapping) or "sizes" not in c:
            raise InputError(f"faithfulness curve {i} must be a dict with 'sizes' and 'asr' and/or 'utility'")
        if "asr" not in c and "utility" not in c:
            raise InputError(f"faithfulness curve {i} ({c.get('label', '?')}) has neither 'asr' nor 'utility'")
        n = len(c["sizes"])
        for key in ("asr", "utility"):
            if key in c and c[key] is not None and len(c[key]) != n:
                raise InputError(f"faithfulness curve {i} ({c.get('label', '?')}): {len(c[key])} {key} values for {n} sizes")
    return curves


def faithfulness_figure(curve: Mapping[str, Any] | Sequence[Mapping[str, Any]], title: str | None = None) -> go.Figure:
    """ASR (left) and utility (right) against circuit size, one line per curve dict.

    ``curve``: ``{"sizes", "asr", "utility", "auc_asr", "auc_utility", "label"}`` or a list of
    them (several methods). AUCs go in the trace names (and in the title for a single curve).
    Traces: one per present metric per curve, ASR first.
    """
    curves = _curves(curve)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("attack success rate (ASR)", "utility"), horizontal_spacing=0.1)
    all_sizes = [float(s) for c in curves for s in c["sizes"]]
    fractions = bool(all_sizes) and all(0 <= s <= 1 for s in all_sizes)
    for i, c in enumerate(curves):
        label = str(c.get("label") or f"curve {i}")
        colour = PALETTE[i % len(PALETTE)]
        for col, key, auc_key in ((1, "asr", "auc_asr"), (2, "utility", "auc_utility")):
            ys = c.get(key)
            if ys is None:
                continue
            auc = c.get(auc_key)
            auc_txt = f" (AUC {float(auc):.3f})" if _num(auc) is not None else ""
            fig.add_trace(
                go.Scatter(
                    x=[float(s) for s in c["sizes"]], y=[_num(y) for y in ys], mode="lines+markers",
                    line={"color": colour, "dash": "solid" if key == "asr" else "dash"},
                    name=f"{_esc(label)} {key}{auc_txt}", legendgroup=label,
                    hovertemplate=f"{_esc(label)}<br>size %{{x}}<br>{key} %{{y:.3f}}<extra></extra>",
                ),
                row=1, col=col,
            )
    if title is None:
        if len(curves) == 1:
            c = curves[0]
            bits = [f"AUC {k.split('_')[1]} {float(c[k]):.3f}" for k in ("auc_asr", "auc_utility") if _num(c.get(k)) is not None]
            title = f"Faithfulness: {_esc(c.get('label') or 'circuit')}" + (f" ({', '.join(bits)})" if bits else "")
        else:
            title = "Faithfulness: ASR and utility vs circuit size"
    xt = "circuit size (fraction of components)" if fractions else "circuit size (components)"
    fig.update_xaxes(title={"text": xt})
    fig.update_yaxes(title={"text": "ASR"}, row=1, col=1)
    fig.update_yaxes(title={"text": "utility"}, row=1, col=2)
    fig.update_layout(title={"text": title}, height=420, legend={"orientation": "h", "y": -0.22})
    return fig


# -- overlap -----------------------------------------------------------------------------------
def _iou(x: np.ndarray, y: np.ndarray) -> float:
    union = int((x | y).sum())
    return int((x & y).sum()) / union if union else 1.0


def overlap_figure(a: Circuit, b: Circuit, names: tuple[str, str] = ("safety", "backdoor")) -> go.Figure:
    """Per layer: heads and neurons only in ``a``, only in ``b``, in both (stacked bars), and the
    head grid coloured by category (neither / only a / only b / both). IoU in the title.

    Raises :class:`~safecircuits.circuits.circuit.ShapeMismatchError` when the circuits have different shapes.
    Traces: 3 head bars, 3 neuron bars, 1 heatmap.
    """
    iou = a.iou(b)  # raises ShapeMismatchError on different shapes
    na, nb = (_esc(n) for n in names)
    ha, hb = a.heads.numpy(), b.heads.numpy()
    ma, mb = a.neurons.numpy(), b.neurons.numpy()
    n_layers, n_heads = ha.shape
    layers = np.arange(n_layers)
    fig = make_subplots(
        rows=1, cols=3, column_widths=[0.3, 0.3, 0.4], horizontal_spacing=0.08,
        subplot_titles=("heads per layer", "neurons per layer", "head grid"),
    )
    cats = ((f"only {na}", OVERLAP_COLOURS[1]), (f"only {nb}", OVERLAP_COLOURS[2]), ("both", OVERLAP_COLOURS[3]))
    for col, (x, y), unit in ((1, (ha, hb), "heads"), (2, (ma, mb), "neurons")):
        parts = ((x & ~y).sum(axis=1), (~x & y).sum(axis=1), (x & y).sum(axis=1))
        for (name, colour), vals in zip(cats, parts, strict=True):
            fig.add_trace(
                go.Bar(
                    x=layers, y=vals, name=name, marker={"color": colour}, legendgroup=name, showlegend=col == 1,
                    hovertemplate=f"layer %{{x}}<br>%{{y}} {unit} {name}<extra></extra>",
                ),
                row=1, col=col,
            )
    cat = (ha.astype(np.int64) + 2 * hb.astype(np.int64))  # 0 neither, 1 a, 2 b, 3 both
    labels = ("neither", f"only {na}", f"only {nb}", "both")
    text = [[f"L{ly}H{h}<br>{labels[cat[ly, h]]}" for h in range(n_heads)] for ly in range(n_layers)]
    scale = []
    for k, colour in enumerate(OVERLAP_COLOURS):
        scale += [[k / 4, colour], [(k + 1) / 4, colour]]
    fig.add_trace(
        go.Heatmap(
            z=cat, x=np.arange(n_heads), y=layers, text=text, hovertemplate="%{text}<extra></extra>",
            colorscale=scale, zmin=-0.5, zmax=3.5, xgap=1, ygap=1, name="head grid",
            colorbar={"tickvals": [0, 1, 2, 3], "ticktext": list(labels), "len": 0.8},
        ),
        row=1, col=3,
    )
    fig.update_xaxes(title={"text": "layer"}, row=1, col=1)
    fig.update_xaxes(title={"text": "layer"}, row=1, col=2)
    fig.update_xaxes(title={"text": "head"}, dtick=1 if n_heads <= 40 else None, row=1, col=3)
    fig.update_yaxes(title={"text": "layer"}, dtick=1 if n_layers <= 48 else None, row=1, col=3)
    title = (
        f"Overlap of {na} and {nb}: IoU {iou:.3f} "
        f"(heads {_iou(ha, hb):.3f}, neurons {_iou(ma, mb):.3f}; shared {int((ha & hb).sum())} heads, {int((ma & mb).sum())} neurons)"
    )
    fig.update_layout(
        title={"text": title}, barmode="stack", height=max(420, 150 + 22 * n_layers),
        legend={"orientation": "h", "y": -0.2}, plot_bgcolor="white",
    )
    return fig


# -- report ------------------------------------------------------------------------------------
def _fig_html(fig: go.Figure) -> str:
    h = fig.layout.height or 450
    return fig.to_html(
        full_html=False, include_plotlyjs=False, default_width="100%", default_height=f"{int(h)}px",
        config={"displaylogo": False, "responsive": True},
    )


def _short(v: Any, limit: int = 300) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _provenance_table(c: Circuit) -> str:
    p = c.provenance
    sp = c.sparsity
    rows: list[tuple[str, Any]] = [(k, p[k]) for k in ("model", "objective", "mask", "ablation", "seed", "steps", "seconds", "op", "top_k") if k in p]
    rows += [
        ("shape", f"{c.shape['n_layers']} layers × {c.shape['n_heads']} heads, d_mlp {c.shape['d_mlp']}"),
        ("components", f"{c.n_components} of {c.total_components} ({c.n_heads} heads, {c.n_neurons} neurons)"),
        ("sparsity heads", f"{100 * sp['heads']:.2f}%"),
        ("sparsity neurons", f"{100 * sp['neurons']:.2f}%"),
        ("sparsity overall", f"{100 * sp['overall']:.3f}%"),
        ("scores", ", ".join(n for n, s in (("heads", c.head_scores), ("neurons", c.neuron_scores)) if s is not None) or "none"),
    ]
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(_short(v))}</td></tr>" for k, v in rows)
    return f'<table class="prov">{body}</table>'


def _components_details(c: Circuit, cap: int = 1000) -> str:
    names = c.components()
    shown = names[:cap]
    more = f" … and {len(names) - cap} more" if len(names) > cap else ""
    return (
        f"<details><summary>components ({len(names)})</summary><p class=\"comps\">"
        f"{_esc(', '.join(shown)) or '(empty circuit)'}{_esc(more)}</p></details>"
    )


def _slug(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower() or "circuit"
    slug, i = f"c-{base}", 1
    while slug in used:
        i += 1
        slug = f"c-{base}-{i}"
    used.add(slug)
    return slug


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1300px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table.prov{border-collapse:collapse;font-size:.9em;margin:.5em 0 1em}
table.prov th{text-align:left;padding:.2em .8em .2em 0;color:#555;font-weight:600;vertical-align:top}
table.prov td{padding:.2em .8em;font-family:ui-monospace,monospace}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em;margin:1em 0}
.meta{color:#777;font-size:.85em} p.comps{font-family:ui-monospace,monospace;font-size:.8em;word-break:break-word}
nav a{margin-right:1em}
"""


def circuit_report_html(
    path: str | Path,
    circuits: Mapping[str, Circuit],
    faithfulness: Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]] | None = None,
    title: str = "safecircuits circuit map",
    extra_html: str = "",
) -> Path:
    """Write ONE self-contained, offline HTML report (plotly.js embedded once, no CDN) and return its path.

    Per circuit: provenance table, head heatmap, neuron bars, training curves (if there is a
    history) and the faithfulness curve ``faithfulness[name]`` (if given). With two or more
    circuits, an overlap section for the first two (or a note when their shapes differ).
    Faithfulness entries that name no circuit get their own section. ``extra_html`` is inserted
    verbatim before the footer (the caller escapes it). Written atomically (temp file + os.replace).
    """
    if not circuits:
        raise InputError("circuit_report_html needs at least one circuit: got an empty mapping")
    for name, c in circuits.items():
        if not isinstance(c, Circuit):
            raise InputTypeError(f"circuit {name!r} is a {type(c).__name__}, not a Circuit")
    faithfulness = dict(faithfulness or {})
    path = Path(path)
    used: set[str] = set()
    slugs = {name: _slug(name, used) for name in circuits}

    parts: list[str] = []
    nav = [f'<a href="#{slugs[n]}">{_esc(n)}</a>' for n in circuits]
    if len(circuits) >= 2:
        nav.append('<a href="#overlap">overlap</a>')
    for name, c in circuits.items():
        parts.append(f'<section id="{slugs[name]}"><h2>{_esc(name)}</h2>')
        parts.append(_provenance_table(c))
        parts.append(_components_details(c))
        parts.append(_fig_html(head_heatmap(c)))
        parts.append(_fig_html(neuron_bar(c)))
        tc = training_curves(c)
        parts.append(_fig_html(tc) if tc is not None else '<p class="note">No training history recorded for this circuit.</p>')
        if name in faithfulness:
            parts.append(_fig_html(faithfulness_figure(faithfulness[name])))
        parts.append("</section>")

    others = {k: v for k, v in faithfulness.items() if k not in circuits}
    if others:
        parts.append('<section id="faithfulness"><h2>Faithfulness (other curves)</h2>')
        for k, v in others.items():
            parts.append(f"<h3>{_esc(k)}</h3>")
            parts.append(_fig_html(faithfulness_figure(v)))
        parts.append("</section>")

    if len(circuits) >= 2:
        (na, a), (nb, b) = list(circuits.items())[:2]
        parts.append(f'<section id="overlap"><h2>Overlap: {_esc(na)} vs {_esc(nb)}</h2>')
        if a.shape == b.shape:
            parts.append(_fig_html(overlap_figure(a, b, names=(na, nb))))
        else:
            parts.append(
                f'<p class="note">Overlap skipped: circuits {_esc(repr(na))} and {_esc(repr(nb))} have different shapes '
                f"({_esc(a.shape)} vs {_esc(b.shape)}); they were found on different models.</p>"
            )
        parts.append("</section>")

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n"
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n'
        "</head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n<p class=\"meta\">{len(circuits)} circuit(s) · generated {stamp} by safecircuits</p>\n"
        f"<nav>{''.join(nav)}</nav>\n" + "\n".join(parts) + "\n" + extra_html + "\n</body>\n</html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
