"""Interactive circuit maps (plotly): head heatmaps, neuron bars, training curves, faithfulness
curves, overlaps, and one self-contained offline HTML report that gathers them.

Every figure builder takes plain :class:`~safecircuits.circuits.circuit.Circuit` objects (or the
faithfulness-curve dicts) and returns a ``plotly.graph_objects.Figure``; nothing is shown or written
except by :func:`circuit_report_html`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from safecircuits.circuits.circuit import Circuit
from safecircuits.errors import InputError, InputTypeError
from safecircuits.viz._html import CSS, esc, fig_html, page_html, write_atomic

__all__ = [
    "components_html",
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
MEMBER_SCALE = [[0.0, "#fdae61"], [0.5, "#e34a33"], [1.0, "#67000d"]]  # circuit members: saturated orange to dark red
OTHER_SCALE = [[0.0, "#f7f7f7"], [1.0, "#a8a8a8"]]  # everything else: muted greys
MEMBER_COLOUR, OTHER_COLOUR = "#d62728", "#9e9e9e"

_CSS, _esc, _fig_html = CSS, esc, fig_html  # the names the other page writers import


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4g}"


def _count_axis(values: Any, from_zero: bool = False) -> dict[str, Any]:
    """Axis settings for counts: integer tick labels, and a tick on every integer when the span is
    small enough that plotly would otherwise put ticks between them. ``from_zero``: the axis range
    starts at 0 (bars), so the span is measured from there."""
    vals = [float(v) for v in np.asarray(values, dtype=np.float64).ravel() if np.isfinite(v)]
    if from_zero:
        vals.append(0.0)
    span = (max(vals) - min(vals)) if vals else 0.0
    out: dict[str, Any] = {"tickformat": ",d"}
    if span <= 10:
        out |= {"tick0": 0, "dtick": 1}
    return out


def _masked(z: np.ndarray, keep: np.ndarray) -> list[list[float | None]]:
    """``z`` where ``keep``, None (a heatmap gap) elsewhere."""
    return [[float(v) if k else None for v, k in zip(zr, kr, strict=True)] for zr, kr in zip(z, keep, strict=True)]


# -- heads -------------------------------------------------------------------------------------
def head_heatmap(circuit: Circuit, title: str | None = None) -> go.Figure:
    """Layer x head heatmap; circuit heads are unmistakable at a glance.

    With head scores: two heatmaps on one shared score range, circuit heads on a saturated
    orange-to-red scale (trace 0, "in circuit") and the other heads on muted greys (trace 1, "not
    in circuit"), each with its own colour bar. Without scores: one membership heatmap (red = in
    the circuit). Either way circuit heads are also outlined with black rectangles
    (``layout.shapes``, one per circuit head). Hover shows ``L{layer}H{head}``, the score and
    ``in circuit: yes/no``.
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
    common = {"x": np.arange(n_heads), "y": np.arange(n_layers), "text": text, "hovertemplate": "%{text}<extra></extra>",
              "xgap": 1, "ygap": 1, "hoverongaps": False}
    if has_scores:
        finite = z[np.isfinite(z)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1e-9
        fig = go.Figure()
        for inside, scale, name, ypos in ((True, MEMBER_SCALE, "in circuit", 0.77), (False, OTHER_SCALE, "not in circuit", 0.23)):
            fig.add_trace(go.Heatmap(
                z=_masked(z, member == inside), colorscale=scale, zmin=lo, zmax=hi, name=name,
                colorbar={"title": {"text": f"score<br>({'circuit' if inside else 'other'} heads)", "side": "right"},
                          "y": ypos, "len": 0.45, "thickness": 14},
                **common,
            ))
    else:
        fig = go.Figure(go.Heatmap(z=z, colorscale=[[0, "#f2f2f2"], [1, MEMBER_COLOUR]], showscale=False, zmin=0, zmax=1,
                                   name="heads", **common))
    for ly, h in circuit.heads.nonzero().tolist():
        fig.add_shape(
            type="rect", x0=h - 0.5, x1=h + 0.5, y0=ly - 0.5, y1=ly + 0.5,
            line={"color": "black", "width": 2}, fillcolor="rgba(0,0,0,0)", layer="above",
        )
    sp = circuit.sparsity["heads"]
    what = "red = in circuit (outlined), grey = not" + ("; shade = score" if has_scores else "")
    fig.update_layout(
        title={"text": title or f"Attention heads: {circuit.n_heads} of {member.size} in the circuit ({100 * sp:.1f}%)"
                                f"<br><sup>{what}</sup>"},
        xaxis={"title": {"text": "head"}, "dtick": 1 if n_heads <= 40 else None, "constrain": "domain", "showgrid": False},
        yaxis={"title": {"text": "layer"}, "dtick": 1 if n_layers <= 48 else None, "showgrid": False},
        height=max(340, 170 + 22 * n_layers),
        margin={"t": 80, "l": 60, "r": 30, "b": 50},
        plot_bgcolor="white",
    )
    return fig


# -- neurons -----------------------------------------------------------------------------------
def _layer_names(member: np.ndarray, names_per_layer: int) -> list[str]:
    out = []
    for ly, row in enumerate(member):
        idx = np.flatnonzero(row)
        shown = ", ".join(f"L{ly}N{i}" for i in idx[:names_per_layer])
        out.append(shown + (f" (+{idx.size - names_per_layer} more)" if idx.size > names_per_layer else "") if idx.size else "none")
    return out


def neuron_bar(circuit: Circuit, top_per_layer: int = 20, max_points: int = 3000, title: str | None = None) -> go.Figure:
    """MLP neurons by layer, small enough for real models (never one marker per neuron).

    Top (trace 0): circuit neurons per layer (bar; hover: the count, the share of the layer and
    the first names). With neuron scores, below: the scores of the circuit neurons (trace 1, red;
    the ``max_points`` highest-scoring when there are more) and of the ``top_per_layer``
    highest-scoring other neurons of each layer (trace 2, grey), jittered around their layer;
    hover names them ``L{layer}N{neuron}``. Traces: 1 bar, plus 2 scatters with scores.
    """
    if top_per_layer < 0:
        raise InputError(f"top_per_layer must be >= 0, got {top_per_layer}")
    if max_points < 1:
        raise InputError(f"max_points must be >= 1, got {max_points}")
    member = circuit.neurons.numpy()
    n_layers, d_mlp = member.shape
    counts = member.sum(axis=1)
    share = counts / d_mlp if d_mlp else np.zeros(n_layers)
    layers = np.arange(n_layers)
    bar = go.Bar(
        x=layers,
        y=counts,
        customdata=np.stack([np.round(share * 100, 3), np.full(n_layers, d_mlp)], axis=1),
        hovertext=_layer_names(member, 6),
        hovertemplate="layer %{x}: %{y} of %{customdata[1]} neurons in circuit (%{customdata[0]:.2f}%)<br>%{hovertext}<extra></extra>",
        marker={"color": MEMBER_COLOUR},
        name="circuit neurons",
        showlegend=False,
    )
    n_total = circuit.n_neurons
    head = title or f"MLP neurons: {n_total} of {member.size} in the circuit ({100 * circuit.sparsity['neurons']:.2f}%)"
    x_axis = {"title": {"text": "layer"}, "dtick": 1 if n_layers <= 48 else None, "range": [-0.6, n_layers - 0.4]}
    if circuit.neuron_scores is None or d_mlp == 0:
        fig = go.Figure(bar)
        fig.update_layout(title={"text": head}, xaxis=x_axis, yaxis={"title": {"text": "circuit neurons"}, **_count_axis(counts, True)},
                          height=380, margin={"t": 70})
        return fig

    scores = circuit.neuron_scores.numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    # circuit neurons, the highest-scoring max_points of them
    ml, mi = np.nonzero(member)
    shown = np.argsort(-scores[ml, mi], kind="stable")[:max_points]
    ml, mi = ml[shown], mi[shown]
    # the best other neurons of each layer
    k = min(top_per_layer, d_mlp)
    other = np.where(member, -np.inf, scores)
    order = np.argsort(-other, axis=1, kind="stable")[:, :k]
    ol = np.repeat(layers, k)
    oi = order.ravel()
    keep = ~member[ol, oi]
    ol, oi = ol[keep], oi[keep]
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1, row_heights=[0.35, 0.65],
        subplot_titles=(
            "circuit neurons per layer",
            (f"scores of the {len(ml)} circuit neurons" if len(ml) == n_total else f"scores of the top {len(ml)} of {n_total} circuit neurons")
            + (f" and of the top {k} other neurons per layer" if k else ""),
        ),
    )
    fig.add_trace(bar, row=1, col=1)
    for ls, is_, colour, name in ((ml, mi, MEMBER_COLOUR, "in circuit"), (ol, oi, OTHER_COLOUR, "not in circuit (top per layer)")):
        fig.add_trace(
            go.Scatter(
                x=(ls + rng.uniform(-0.35, 0.35, size=ls.size)).astype(np.float32), y=scores[ls, is_].astype(np.float32),
                text=[f"L{a}N{b}" for a, b in zip(ls.tolist(), is_.tolist(), strict=True)], mode="markers",
                marker={"size": 5 if colour == MEMBER_COLOUR else 4, "color": colour, "opacity": 0.8},
                hovertemplate="%{text}<br>score %{y:.4f}<extra>" + name + "</extra>",
                name=name,
            ),
            row=2, col=1,
        )
    fig.update_xaxes(x_axis, row=2, col=1)
    fig.update_xaxes(dtick=x_axis["dtick"], range=x_axis["range"], row=1, col=1)
    fig.update_yaxes(title={"text": "circuit neurons"}, **_count_axis(counts, True), row=1, col=1)
    fig.update_yaxes(title={"text": "score"}, row=2, col=1)
    fig.update_layout(title={"text": head}, height=660, margin={"t": 90}, legend={"orientation": "h", "y": -0.12})
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
        sizes = [v for v in (_num(r.get("circuit_size")) for r in history) if v is not None]
        fig.update_yaxes(title={"text": "circuit size (components)"}, secondary_y=True, showgrid=False, **_count_axis(sizes))
    objective = circuit.provenance.get("objective")
    fig.update_layout(
        title={"text": title or f"Training curves{f' ({_esc(objective)} objective)' if objective else ''}"
                                "<br><sup>train solid, val dashed; circuit size dotted (right axis)</sup>"},
        xaxis={"title": {"text": "step"}, **_count_axis([s for s in steps if _num(s) is not None])},
        height=480,
        margin={"t": 80},
        legend={"groupclick": "togglegroup"},
    )
    fig.update_yaxes(title={"text": "loss term"}, secondary_y=False)
    return fig


# -- faithfulness ------------------------------------------------------------------------------
METRIC_NAMES = {"asr": "ASR", "triggered_asr": "ASR with the trigger", "utility": "utility"}


def _curves(curve: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    curves = [curve] if isinstance(curve, Mapping) else list(curve)
    if not curves:
        raise InputError("faithfulness_figure needs at least one curve dict")
    for i, c in enumerate(curves):
        if not isinstance(c, Mapping) or "sizes" not in c:
            raise InputError(f"faithfulness curve {i} must be a dict with 'sizes' and 'asr' and/or 'utility'")
        if "asr" not in c and "utility" not in c and "triggered_asr" not in c:
            raise InputError(f"faithfulness curve {i} ({c.get('label', '?')}) has neither 'asr' nor 'utility'")
        n = len(c["sizes"])
        for key in ("asr", "triggered_asr", "utility"):
            if key in c and c[key] is not None and len(c[key]) != n:
                raise InputError(f"faithfulness curve {i} ({c.get('label', '?')}): {len(c[key])} {key} values for {n} sizes")
    return curves


def _attack_metric(c: Mapping[str, Any], metric: str) -> str | None:
    """The attack metric a curve is about: ``triggered_asr`` for a backdoor circuit (its
    ``circuit.objective``, else its label, names the backdoor) that has it, else ``asr``."""
    if metric != "auto":
        return metric if c.get(metric) is not None else None
    about = (c.get("circuit") or {}).get("objective") or c.get("objective") or c.get("label") or ""
    if "backdoor" in str(about).lower() and c.get("triggered_asr") is not None:
        return "triggered_asr"
    return "asr" if c.get("asr") is not None else None


def faithfulness_figure(
    curve: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    title: str | None = None,
    metric: str = "auto",
) -> go.Figure:
    """Attack success (left) and utility (right) against the number of components ablated, one
    line per curve dict (the output of :func:`~safecircuits.circuits.evaluate.faithfulness_curve`).

    ``curve``: ``{"sizes", "asr", "triggered_asr", "utility", "auc_*", "label", "circuit", "mode",
    "fractions"}`` or a list of them (several methods). ``metric`` picks the attack metric:
    ``"auto"`` plots the triggered ASR for a backdoor circuit (``circuit.objective`` or the label
    says ``backdoor``) and the plain ASR otherwise; for a backdoor curve the untriggered ASR is
    drawn too, faint and dotted, for reference. ``"asr"`` / ``"triggered_asr"`` force one. AUCs of
    the plotted metrics go in the trace names (and the title for a single curve). With one curve
    that records ``fractions``, a dotted vertical line marks the circuit's own size.
    Traces: per curve, the attack metric (then the reference ASR when drawn) and the utility.
    """
    if metric not in ("auto", "asr", "triggered_asr"):
        raise InputError(f"unknown metric {metric!r}: use 'auto', 'asr' or 'triggered_asr'")
    curves = _curves(curve)
    attack = [_attack_metric(c, metric) for c in curves]
    used = {m for m in attack if m}
    left = ("attack success rate with the trigger (backdoor prompts)" if used == {"triggered_asr"}
            else "attack success rate (ASR) on harmful prompts" if used == {"asr"} else "attack success rate")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(left, "utility: harmless prompts answered"), horizontal_spacing=0.1)
    all_sizes = [float(s) for c in curves for s in c["sizes"]]
    fractions = bool(all_sizes) and all(0 <= s <= 1 for s in all_sizes) and any(s != int(s) for s in all_sizes)
    for i, c in enumerate(curves):
        label = str(c.get("label") or f"curve {i}")
        colour = PALETTE[i % len(PALETTE)]
        xs = [float(s) for s in c["sizes"]]
        lines: list[tuple[int, str, dict[str, Any], float]] = []
        attack_key = attack[i]
        if attack_key:
            lines.append((1, attack_key, {"color": colour, "dash": "solid", "width": 2.5}, 1.0))
            if attack_key == "triggered_asr" and c.get("asr") is not None:
                lines.append((1, "asr", {"color": colour, "dash": "dot", "width": 1.5}, 0.55))
        if c.get("utility") is not None:
            lines.append((2, "utility", {"color": colour, "dash": "dash", "width": 2}, 1.0))
        for col, key, line, opacity in lines:
            auc = _num(c.get(f"auc_{key}"))
            auc_txt = f" (AUC {auc:.3f})" if auc is not None else ""
            what = "ASR without the trigger" if key == "asr" and attack[i] == "triggered_asr" else METRIC_NAMES[key]
            fig.add_trace(
                go.Scatter(
                    x=xs, y=[_num(y) for y in c[key]], mode="lines+markers", line=line, opacity=opacity,
                    name=f"{_esc(label)}: {what}{auc_txt}", legendgroup=label,
                    hovertemplate=f"{_esc(label)}<br>%{{x}} components ablated<br>{what} %{{y:.1%}}<extra></extra>",
                ),
                row=1, col=col,
            )
    if len(curves) == 1 and 1.0 in list(curves[0].get("fractions") or []):
        at = float(curves[0]["sizes"][list(curves[0]["fractions"]).index(1.0)])
        for col in (1, 2):
            fig.add_vline(x=at, line={"color": "#555", "dash": "dot", "width": 1}, row=1, col=col,
                          annotation={"text": f"the circuit ({at:g})", "font": {"size": 10}}, annotation_position="top right")
    modes = {c.get("mode") for c in curves}
    if title is None:
        if len(curves) == 1:
            c, first_key = curves[0], attack[0]
            bits = [f"AUC {METRIC_NAMES[k]} {float(c[f'auc_{k}']):.3f}" for k in (first_key, "utility")
                    if k and _num(c.get(f"auc_{k}")) is not None]
            title = f"Faithfulness of the {_esc(c.get('label') or 'circuit')} circuit" + (f" ({', '.join(bits)})" if bits else "")
        else:
            title = "Faithfulness: attack success and utility vs components ablated"
        title += ("<br><sup>only the top components of the circuit's ranking kept, all others ablated</sup>" if modes == {"only"}
                  else "<br><sup>the top components of the circuit's ranking ablated; 0 = the full model</sup>")
    if fractions:
        xt = "circuit size (fraction of components)"
    elif modes == {"only"}:
        xt = "components kept (all others ablated)"
    else:
        xt = "components ablated (count)"
    fig.update_xaxes(title={"text": xt}, **({} if fractions else _count_axis(all_sizes)))
    fig.update_yaxes(range=[-0.03, 1.03], tickformat=".0%")
    fig.update_yaxes(title={"text": "ASR with the trigger" if used == {"triggered_asr"} else "attack success rate"}, row=1, col=1)
    fig.update_yaxes(title={"text": "utility (harmless compliance)"}, row=1, col=2)
    fig.update_layout(title={"text": title}, height=460, margin={"t": 100}, legend={"orientation": "h", "y": -0.25})
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
    fig.update_yaxes(title={"text": "heads"}, **_count_axis((ha | hb).sum(axis=1), True), row=1, col=1)
    fig.update_yaxes(title={"text": "neurons"}, **_count_axis((ma | mb).sum(axis=1), True), row=1, col=2)
    fig.update_xaxes(title={"text": "head"}, dtick=1 if n_heads <= 40 else None, row=1, col=3)
    fig.update_yaxes(title={"text": "layer"}, dtick=1 if n_layers <= 48 else None, row=1, col=3)
    title = (
        f"Overlap of {na} and {nb}: IoU {iou:.3f}"
        f"<br><sup>heads {_iou(ha, hb):.3f}, neurons {_iou(ma, mb):.3f}; shared {int((ha & hb).sum())} heads, "
        f"{int((ma & mb).sum())} neurons</sup>"
    )
    fig.update_layout(
        title={"text": title}, barmode="stack", height=max(440, 170 + 22 * n_layers), margin={"t": 90},
        legend={"orientation": "h", "y": -0.2}, plot_bgcolor="white",
    )
    return fig


# -- report ------------------------------------------------------------------------------------
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


def components_html(c: Circuit, shown: int = 60, cap: int = 5000) -> str:
    """The circuit listed by name: its heads and its neurons, each by descending score (index
    order without scores), the first ``shown`` of each family with a count of the rest; then, folded,
    every component by layer (at most ``cap`` names, with a count of the rest)."""
    names = c.component_names(c.n_heads + shown)  # heads first: all heads, then the first `shown` neurons
    heads, neurons = names[: c.n_heads], names[c.n_heads:]
    order = {"H": "by score" if c.head_scores is not None else "by layer", "N": "by score" if c.neuron_scores is not None else "by layer"}
    parts = []
    for kind, names, total, what in (("H", heads, c.n_heads, "heads"), ("N", neurons, c.n_neurons, "neurons")):
        lst = ", ".join(names[:shown]) or "none"
        more = f" (+{total - min(len(names), shown)} more)" if total > min(len(names), shown) else ""
        parts.append(f'<p class="comps"><strong>{total} {what}</strong> ({order[kind]}): {_esc(lst)}{_esc(more)}</p>')
    every = c.component_names(cap, order="index")
    rest = c.n_components - len(every)
    parts.append(
        f"<details><summary>all {c.n_components} components by layer</summary><p class=\"comps\">"
        f"{_esc(', '.join(every)) or '(empty circuit)'}{_esc(f' … (+{rest} more)' if rest > 0 else '')}</p></details>"
    )
    return "<h3>Components</h3>" + "".join(parts)


def _slug(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower() or "circuit"
    slug, i = f"c-{base}", 1
    while slug in used:
        i += 1
        slug = f"c-{base}-{i}"
    used.add(slug)
    return slug


def circuit_report_html(
    path: str | Path,
    circuits: Mapping[str, Circuit],
    faithfulness: Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]] | None = None,
    title: str = "safecircuits circuit map",
    extra_html: str = "",
) -> Path:
    """Write ONE self-contained, offline HTML report (plotly.js embedded once, no CDN) and return its path.

    Per circuit: provenance table, the components by name (:func:`components_html`), head heatmap,
    neurons by layer, training curves (if there is a history) and the faithfulness curve
    ``faithfulness[name]`` (if given; for a backdoor circuit it plots the triggered ASR). With two
    or more circuits, an overlap section for the first two (or a note when their shapes differ).
    Faithfulness entries that name no circuit get their own section. ``extra_html`` is inserted
    verbatim before the end (the caller escapes it). Sized for real models: no figure draws one
    marker per neuron, so a 30-layer x 1536-neuron circuit stays well under a few MB. Written
    atomically (temp file + os.replace).
    """
    if not circuits:
        raise InputError("circuit_report_html needs at least one circuit: got an empty mapping")
    for name, c in circuits.items():
        if not isinstance(c, Circuit):
            raise InputTypeError(f"circuit {name!r} is a {type(c).__name__}, not a Circuit")
    faithfulness = dict(faithfulness or {})
    used: set[str] = set()
    slugs = {name: _slug(name, used) for name in circuits}

    parts: list[str] = []
    nav = [f'<a href="#{slugs[n]}">{_esc(n)}</a>' for n in circuits]
    if len(circuits) >= 2:
        nav.append('<a href="#overlap">overlap</a>')
    for name, c in circuits.items():
        parts.append(f'<section id="{slugs[name]}"><h2>{_esc(name)}</h2>')
        parts.append(_provenance_table(c))
        parts.append(components_html(c))
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
    body = (
        f'<p class="meta">{len(circuits)} circuit(s) · generated {stamp} by safecircuits</p>\n'
        f"<nav>{''.join(nav)}</nav>\n" + "\n".join(parts) + "\n" + extra_html
    )
    return write_atomic(path, page_html(title, body))
