"""Interactive circuit maps: figures and the offline HTML report (hand-built circuits, no models)."""

from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from plotly.offline import get_plotlyjs

from safecircuits.circuits.circuit import Circuit, ShapeMismatchError
from safecircuits.viz import (
    circuit_report_html,
    faithfulness_figure,
    head_heatmap,
    neuron_bar,
    overlap_figure,
    training_curves,
)

N_LAYERS, N_HEADS, D_MLP = 3, 4, 16
PLOTLY_MARKER = "plotly.js v"  # the bundle's licence banner, once per embedded copy


def _history(n: int = 5) -> list[dict[str, float]]:
    return [
        {
            "step": 10 * (i + 1),
            "train/comply_removed": 2.0 / (i + 1), "train/refuse_alone": 1.5 - 0.1 * i,
            "train/sparsity": 0.9 - 0.1 * i, "train/total": 3.0 - 0.3 * i,
            "val/behaviour": 1.0 / (i + 1), "val/comply_removed": 2.1 / (i + 1),
            "circuit_size": 40 - 3 * i,
        }
        for i in range(n)
    ]


def _circuit(seed: int, shape: tuple[int, int, int] = (N_LAYERS, N_HEADS, D_MLP), history: bool = True, scores: bool = True,
             objective: str = "safety") -> Circuit:
    g = torch.Generator().manual_seed(seed)
    n_layers, n_heads, d_mlp = shape
    hs = torch.rand(n_layers, n_heads, generator=g)
    ns = torch.rand(n_layers, d_mlp, generator=g)
    prov = {"model": "organism:aligned?size=tiny", "objective": objective, "mask": "hard_concrete",
            "ablation": "zero", "seed": seed, "steps": 50}
    if history:
        prov["history"] = _history()
    return Circuit(hs > 0.6, ns > 0.7, hs if scores else None, ns if scores else None, prov)


@pytest.fixture
def a() -> Circuit:
    return _circuit(0)


@pytest.fixture
def b() -> Circuit:
    return _circuit(1, objective="backdoor")


def _curve(label: str = "mask") -> dict:
    return {"sizes": [0.0, 0.01, 0.05, 0.1], "asr": [0.9, 0.5, 0.2, 0.1], "utility": [0.8, 0.8, 0.75, 0.6],
            "auc_asr": 0.321, "auc_utility": 0.765, "label": label}


# -- figures -----------------------------------------------------------------------------------
def test_head_heatmap(a: Circuit) -> None:
    fig = head_heatmap(a)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 1 and fig.data[0].type == "heatmap"
    assert list(np.asarray(fig.data[0].z).shape) == [N_LAYERS, N_HEADS]
    np.testing.assert_allclose(np.asarray(fig.data[0].z), a.head_scores.numpy(), rtol=1e-6)
    assert len(fig.layout.shapes) == a.n_heads  # one outline per circuit head
    text = fig.data[0].text
    for ly, h in a.heads.nonzero().tolist():
        assert text[ly][h].startswith(f"L{ly}H{h}<br>") and "in circuit: yes" in text[ly][h]
    for ly, h in (~a.heads).nonzero().tolist():
        assert "in circuit: no" in text[ly][h]


def test_head_heatmap_without_scores() -> None:
    c = _circuit(2, scores=False)
    fig = head_heatmap(c)
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), c.heads.float().numpy())
    assert fig.data[0].showscale is False


def test_neuron_bar(a: Circuit) -> None:
    fig = neuron_bar(a)
    assert [t.type for t in fig.data] == ["bar", "scatter", "scatter"]
    np.testing.assert_array_equal(np.asarray(fig.data[0].y), a.neurons.sum(1).numpy())
    inside = set(fig.data[1].text)
    assert inside == set(n for n in a.components() if "N" in n)  # top 16 of 16: every circuit neuron drawn
    assert len(fig.data[1].text) + len(fig.data[2].text) == N_LAYERS * D_MLP


def test_neuron_bar_caps_points_per_layer() -> None:
    c = _circuit(3, shape=(4, 2, 500))
    fig = neuron_bar(c, top_per_layer=20)
    assert len(fig.data[1].x) + len(fig.data[2].x) == 4 * 20
    # the drawn points are each layer's top 20 by score
    top0 = set(torch.argsort(c.neuron_scores[0], descending=True)[:20].tolist())
    drawn0 = {int(t.split("N")[1]) for tr in fig.data[1:] for t in tr.text if t.startswith("L0N")}
    assert drawn0 == top0


def test_neuron_bar_without_scores() -> None:
    fig = neuron_bar(_circuit(4, scores=False))
    assert [t.type for t in fig.data] == ["bar"]


def test_training_curves(a: Circuit) -> None:
    fig = training_curves(a)
    assert fig is not None
    names = [t.name for t in fig.data]
    assert names == ["train/comply_removed", "val/comply_removed", "train/refuse_alone", "train/sparsity",
                     "train/total", "val/behaviour", "circuit size"]
    dash = {t.name: t.line.dash for t in fig.data}
    assert dash["val/comply_removed"] == "dash" and dash["train/comply_removed"] == "solid"
    assert fig.data[-1].yaxis == "y2"  # circuit size on the secondary axis
    assert list(fig.data[0].x) == [10, 20, 30, 40, 50]
    assert training_curves(_circuit(5, history=False)) is None


def test_faithfulness_figure() -> None:
    fig = faithfulness_figure(_curve())
    assert len(fig.data) == 2
    assert "0.321" in fig.layout.title.text and "0.765" in fig.layout.title.text
    assert "AUC 0.321" in fig.data[0].name and "AUC 0.765" in fig.data[1].name
    multi = faithfulness_figure([_curve("mask"), _curve("attribution")])
    assert len(multi.data) == 4
    with pytest.raises(ValueError, match="3 asr values for 4 sizes"):
        faithfulness_figure({**_curve(), "asr": [0.1, 0.2, 0.3]})


def test_overlap_figure(a: Circuit, b: Circuit) -> None:
    fig = overlap_figure(a, b)
    assert [t.type for t in fig.data] == ["bar"] * 6 + ["heatmap"]
    assert f"IoU {a.iou(b):.3f}" in fig.layout.title.text
    grid = fig.data[-1]
    assert list(np.asarray(grid.z).shape) == [N_LAYERS, N_HEADS]
    both = (a.heads & b.heads).nonzero().tolist()
    for ly, h in both:
        assert grid.z[ly][h] == 3 and grid.text[ly][h] == f"L{ly}H{h}<br>both"
    # stacked bars add up to the union per layer
    heads_sum = sum(np.asarray(t.y) for t in fig.data[:3])
    np.testing.assert_array_equal(heads_sum, (a.heads | b.heads).sum(1).numpy())
    with pytest.raises(ShapeMismatchError):
        overlap_figure(a, _circuit(6, shape=(2, 4, 16)))


# -- report ------------------------------------------------------------------------------------
def test_report_html(tmp_path, a: Circuit, b: Circuit) -> None:
    a.provenance["model"] = "<script>alert(1)</script>"
    out = circuit_report_html(tmp_path / "sub" / "report.html", {"safety": a, "backdoor": b},
                              faithfulness={"safety": _curve()}, extra_html="<p id='extra'>hello</p>")
    assert out.exists() and out.name == "report.html"
    assert not list(out.parent.glob("*.tmp"))
    page = out.read_text(encoding="utf-8")
    # offline: no external scripts; the only cdn.plot.ly mention is the bundle's own topojson default
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)
    assert page.count("cdn.plot.ly") == get_plotlyjs().count("cdn.plot.ly")
    assert page.count(PLOTLY_MARKER) == 1
    n_plots = page.count("Plotly.newPlot") - get_plotlyjs().count("Plotly.newPlot")
    assert n_plots == 2 * 3 + 1 + 1  # 2 circuits x (heads, neurons, curves) + 1 faithfulness + overlap
    for name in a.components():
        if "H" in name:
            assert f'"{name}\\u003cbr\\u003e' in page  # hover data of the head heatmap (plotly escapes "<")
    assert "in circuit: yes" in page
    assert f"IoU {a.iou(b):.3f}" in page
    assert "AUC 0.321" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<p id='extra'>hello</p>" in page
    assert "hard_concrete" in page and f"{100 * a.sparsity['heads']:.2f}%" in page


def test_report_different_shapes_skips_overlap(tmp_path, a: Circuit) -> None:
    other = _circuit(7, shape=(2, 4, 16), history=False)
    page = circuit_report_html(tmp_path / "r.html", {"tiny": a, "other": other}).read_text(encoding="utf-8")
    assert "Overlap skipped" in page and "different shapes" in page
    assert "IoU" not in page
    assert "No training history" in page
    assert page.count(PLOTLY_MARKER) == 1


def test_report_needs_circuits(tmp_path) -> None:
    with pytest.raises(ValueError, match="at least one circuit"):
        circuit_report_html(tmp_path / "r.html", {})
    assert not (tmp_path / "r.html").exists()


def test_report_overwrites_atomically(tmp_path, a: Circuit) -> None:
    p = tmp_path / "r.html"
    p.write_text("old")
    circuit_report_html(p, {"only": a}, title="A & B")
    page = p.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<title>A &amp; B</title>" in page
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.html"]
