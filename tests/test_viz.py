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
    assert [t.type for t in fig.data] == ["heatmap", "heatmap"] and [t.name for t in fig.data] == ["in circuit", "not in circuit"]
    inside, outside = (np.array(t.z, dtype=np.float64) for t in fig.data)  # None -> nan: a gap
    assert list(inside.shape) == [N_LAYERS, N_HEADS]
    member = a.heads.numpy()
    scores = a.head_scores.numpy()
    # circuit heads only in the "in circuit" layer, every other head only in the muted layer, with its score
    np.testing.assert_allclose(inside[member], scores[member], rtol=1e-6)
    np.testing.assert_allclose(outside[~member], scores[~member], rtol=1e-6)
    assert np.isnan(inside[~member]).all() and np.isnan(outside[member]).all()
    # one shared score range, on different colour scales (saturated vs grey), each with a colour bar
    assert fig.data[0].zmin == fig.data[1].zmin and fig.data[0].zmax == fig.data[1].zmax
    assert fig.data[0].colorscale != fig.data[1].colorscale
    assert all(c.startswith("#") and len(set(c[1:])) > 1 for _, c in fig.data[0].colorscale)  # no grey in the member scale
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
    assert set(fig.data[1].text) == {n for n in a.components() if "N" in n}  # every circuit neuron drawn, named
    assert not set(fig.data[2].text) & set(fig.data[1].text)
    assert len(fig.data[2].text) == N_LAYERS * D_MLP - a.n_neurons  # top 20 per layer of 16: every other neuron
    # hover of the bars names the circuit neurons of the layer
    assert all(f"L{ly}N" in t for ly, t in enumerate(fig.data[0].hovertext) if a.neurons[ly].any())
    assert fig.layout.yaxis.tickformat == ",d"  # counts: integer ticks


def test_neuron_bar_caps_points() -> None:
    c = _circuit(3, shape=(4, 2, 500))
    fig = neuron_bar(c, top_per_layer=20, max_points=50)
    members, others = fig.data[1], fig.data[2]
    assert len(members.x) == 50 < c.n_neurons  # the 50 highest-scoring circuit neurons
    best = torch.where(c.neurons, c.neuron_scores, -1.0).flatten().topk(50).values.min()
    assert min(members.y) >= float(best) - 1e-6
    assert len(others.x) == 4 * 20
    # the grey points are each layer's 20 best neurons outside the circuit
    top0 = set(torch.argsort(torch.where(c.neurons[0], -1.0, c.neuron_scores[0]), descending=True)[:20].tolist())
    assert {int(t.split("N")[1]) for t in others.text if t.startswith("L0N")} == top0
    with pytest.raises(ValueError, match="max_points"):
        neuron_bar(c, max_points=0)


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


# -- component names ---------------------------------------------------------------------------
def test_component_names_and_summary() -> None:
    heads = torch.zeros(2, 3, dtype=torch.bool)
    heads[0, 1] = heads[1, 2] = True
    neurons = torch.zeros(2, 8, dtype=torch.bool)
    neurons[0, 5] = neurons[1, 0] = neurons[1, 7] = True
    hs = torch.zeros(2, 3)
    hs[1, 2] = 0.9
    hs[0, 1] = 0.5
    ns = torch.zeros(2, 8)
    ns[1, 7], ns[0, 5], ns[1, 0] = 0.8, 0.6, 0.4
    c = Circuit(heads, neurons, hs, ns)
    assert c.component_names() == ["L1H2", "L0H1", "L1N7", "L0N5", "L1N0"]  # heads first, each by score
    assert c.component_names(order="index") == c.components() == ["L0H1", "L1H2", "L0N5", "L1N0", "L1N7"]
    assert c.component_names(3) == ["L1H2", "L0H1", "L1N7"]
    assert c.components_summary(3) == "L1H2, L0H1, L1N7 (+2 more)"
    assert c.components_summary() == "L1H2, L0H1, L1N7, L0N5, L1N0"
    assert Circuit(heads, neurons).component_names() == c.components()  # no scores: index order
    assert Circuit(heads & False, neurons & False).components_summary() == "(empty circuit)"
    with pytest.raises((ValueError, TypeError), match="order"):  # the runtime type check, or our own
        c.component_names(order="size")


# -- faithfulness: the metric the curve is about -----------------------------------------------
def _backdoor_curve() -> dict:
    return {"sizes": [0, 5, 10, 20], "fractions": [0.0, 0.5, 1.0, 2.0], "mode": "remove", "label": "backdoor",
            "circuit": {"objective": "backdoor"}, "asr": [0.0, 0.0, 0.0, 0.0], "triggered_asr": [1.0, 0.7, 0.1, 0.0],
            "utility": [0.9, 0.9, 0.85, 0.6], "auc_asr": 0.0, "auc_triggered_asr": 0.42, "auc_utility": 0.8}


def test_faithfulness_plots_triggered_asr_for_a_backdoor_circuit() -> None:
    fig = faithfulness_figure(_backdoor_curve())
    main, reference, utility = fig.data
    assert list(main.y) == [1.0, 0.7, 0.1, 0.0] and "with the trigger" in main.name and "0.420" in main.name
    assert list(reference.y) == [0.0] * 4 and "without the trigger" in reference.name and reference.line.dash == "dot"
    assert reference.opacity < main.opacity
    assert list(utility.y) == [0.9, 0.9, 0.85, 0.6] and utility.xaxis == "x2"
    assert "0.420" in fig.layout.title.text and "trigger" in fig.layout.annotations[0].text
    assert fig.layout.xaxis.title.text == "components ablated (count)" and fig.layout.xaxis.tickformat == ",d"
    assert fig.layout.yaxis.title.text == "ASR with the trigger"
    assert any(s.x0 == 10 for s in fig.layout.shapes)  # the circuit's own size is marked
    # a safety circuit (or a forced metric) plots the plain ASR
    forced = faithfulness_figure(_backdoor_curve(), metric="asr")
    assert list(forced.data[0].y) == [0.0] * 4 and len(forced.data) == 2
    safety = faithfulness_figure({**_backdoor_curve(), "label": "safety", "circuit": {"objective": "safety"}})
    assert list(safety.data[0].y) == [0.0] * 4
    with pytest.raises(ValueError, match="unknown metric"):
        faithfulness_figure(_backdoor_curve(), metric="loss")


def test_training_curves_count_axes_are_integers(a: Circuit) -> None:
    fig = training_curves(a)
    assert fig.layout.yaxis2.tickformat == ",d" and fig.layout.xaxis.tickformat == ",d"
    sizes = [r["circuit_size"] for r in a.provenance["history"]]
    assert max(sizes) - min(sizes) > 10 and fig.layout.yaxis2.dtick is None  # wide span: plotly's own integer steps
    small = _circuit(8)
    small.provenance["history"] = [{**r, "circuit_size": 5 - i // 2} for i, r in enumerate(_history())]
    assert training_curves(small).layout.yaxis2.dtick == 1  # a short span: one tick per integer, never 2.5


# -- a real model's size -----------------------------------------------------------------------
def test_report_for_a_real_model_size_stays_small(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    hs, ns = torch.rand(30, 9, generator=g), torch.rand(30, 1536, generator=g)
    c = Circuit(hs > 0.8, ns > 0.9, hs, ns, {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "history": _history()})
    assert c.n_neurons > 4000
    heads = head_heatmap(c)
    assert list(np.asarray(heads.data[0].z).shape) == [30, 9]
    neurons = neuron_bar(c)
    assert len(neurons.data[1].x) == 3000 and len(neurons.data[2].x) == 30 * 20  # capped: never one marker per neuron
    assert neurons.data[1].text[0].startswith("L") and "N" in neurons.data[1].text[0]
    page = circuit_report_html(tmp_path / "big.html", {"smollm2": c}).read_text(encoding="utf-8")
    own = len(page.encode()) - len(get_plotlyjs().encode())
    assert own < 1_000_000, own  # the circuit's own share of the page
    assert f"{c.n_heads} heads</strong>" in page and f"(+{c.n_neurons - 60} more)" in page
    top = c.component_names(c.n_heads + 1)[-1]  # the best-scoring neuron is listed by name
    assert f"{top}," in page


def test_report_lists_components(tmp_path, a: Circuit) -> None:
    page = circuit_report_html(tmp_path / "r.html", {"a": a}).read_text(encoding="utf-8")
    names = a.component_names()
    assert ", ".join(names[: a.n_heads]) in page  # heads by score, in the visible list
    assert f"all {a.n_components} components by layer" in page and ", ".join(a.components()) in page


# -- fine-tuning page --------------------------------------------------------------------------
def _bench(ratios: tuple[float, ...] = (0.1,)) -> dict:
    scores = {"sft": (0.9, 1.0), "sct-freeze": (0.9, 1.0), "sct-tune": (0.4, 0.95), "cwac": (0.1, 0.9)}
    runs = {f"{m}|{p}|0": {"method": m, "ratio": p, "seed": 0, "harmful_score": h, "accuracy": acc, "harmless_kl": 0.1,
                           "harmless_refusal": 0.0, "trainable_share": 1.0, "wall_seconds": 2.0, "step_seconds": 0.1}
            for p in ratios for m, (h, acc) in scores.items() if not (m == "cwac" and p == ratios[0] and len(ratios) > 1)}
    return {"settings": {"model": "m", "task": "t <b>", "steps": 3}, "runs": runs}


def test_benchmark_figure_keeps_every_method_visible() -> None:
    from safecircuits.viz.finetune import benchmark_figure

    fig = benchmark_figure(_bench())
    by = {t.name: t for t in fig.data}
    assert set(by) == {"sft", "sct-freeze", "sct-tune", "cwac"}
    assert len({t.marker.symbol for t in fig.data}) == 4  # one symbol per method
    sft, frz = by["sft"], by["sct-freeze"]
    assert sft.x[0] != frz.x[0] and sft.y[0] == frz.y[0]  # identical scores, drawn apart
    assert list(sft.customdata[0]) == list(frz.customdata[0]) == [100.0, 90.0]  # the hover shows the true values
    assert "drawn" in sft.hovertemplate and "drawn" not in by["cwac"].hovertemplate
    assert by["cwac"].x[0] == 90.0  # a point alone stays where it is
    assert fig.layout.width is None and "<br>" in fig.layout.title.text  # no fixed width: the title is not cut off
    # a method missing from the first panel still gets its legend entry
    two = benchmark_figure(_bench((0.1, 0.3)))
    assert sorted(t.name for t in two.data if t.showlegend) == ["cwac", "sct-freeze", "sct-tune", "sft"]


def test_benchmark_page_renders_html_tables(tmp_path) -> None:
    from safecircuits.finetune.benchmark import markdown_table
    from safecircuits.viz.finetune import write_benchmark_html

    res = _bench()
    page = write_benchmark_html(res, tmp_path / "b.html").read_text(encoding="utf-8")
    own = page.replace(get_plotlyjs(), "")
    assert "<pre>" not in own and "|---|" not in own and "**" not in own
    assert page.count('<table class="data">') == 3
    assert "<th>method</th>" in page and "<td>sft</td>" in page and "<h3>Harmful score (%)<span" in page
    assert "t &lt;b&gt;" in page and "t <b>" not in page  # settings escaped
    assert page.count(PLOTLY_MARKER) == 1 and not re.search(r"<script[^>]*\bsrc\s*=", page)
    assert "90.0 ± 0.0" in markdown_table(res) and "<td>90.0 ± 0.0</td>" in page


def test_markdown_html() -> None:
    from safecircuits.viz._html import markdown_html

    out = markdown_html("**T**, sub\n\n| a | b |\n|---|---|\n| 1 | <x> |\n\nplain *text*")
    assert out.startswith('<h3>T<span class="meta">, sub</span></h3>')  # a bold-led line is a heading
    assert "<thead><tr><th>a</th><th>b</th></tr></thead>" in out and "<td>&lt;x&gt;</td>" in out
    assert "<p>plain <em>text</em></p>" in out


# -- geometry page -----------------------------------------------------------------------------
def _geometry():
    from safecircuits.subspaces.geometry import GeometryReport

    names = ["refusal direction", "activation PCA (k=4)", "weight delta"]
    dims = {"refusal direction": 1, "activation PCA (k=4)": 4, "weight delta": 6}
    ov = [[1.0, 0.2, 0.1], [0.2, 1.0, 0.3], [0.1, 0.3, 1.0]]
    cos = {f"{a} | {b}": [0.5] * min(dims[a], dims[b]) for i, a in enumerate(names) for b in names[i + 1:]}
    return GeometryReport(names, dims, 64, ov, cos, {k: 0.05 for k in cos}, {"model": "m"})


def test_geometry_figure_labels_and_colour_bar() -> None:
    from safecircuits.viz.subspaces import geometry_figure, subspace_label

    assert subspace_label("activation PCA (k=4)", 4) == "activation PCA (k=4)"
    assert subspace_label("refusal direction", 1) == "refusal direction (k=1)"
    assert subspace_label("PCA (k=4)", 3) == "PCA (k=4) (k=3)"  # a different k is still stated
    fig = geometry_figure(_geometry())
    heat = fig.data[0]
    assert not any("(k=4) (k=4)" in str(y) for y in heat.y)
    assert list(heat.x) == ["S1", "S2", "S3"] and str(heat.y[1]).startswith("S2: activation PCA (k=4)")
    assert not any("(k=4) (k=4)" in (t.name or "") for t in fig.data[1:])
    # the colour bar sits in the gap between the panels, clear of the right panel's axis labels
    left_end, right_start = fig.layout.xaxis.domain[1], fig.layout.xaxis2.domain[0]
    assert left_end < heat.colorbar.x < right_start - 0.1 and heat.colorbar.xanchor == "left"
    assert fig.layout.width is None


# -- index -------------------------------------------------------------------------------------
def test_write_index(tmp_path) -> None:
    from safecircuits.errors import MissingFileError
    from safecircuits.viz.index import write_index

    (tmp_path / "a.html").write_text("<p>a</p>")
    (tmp_path / "b & c.json").write_text("{}")
    out = write_index(tmp_path, [("a.html", "Page A", "what A shows"), ("b & c.json", "Data <1>", "numbers")], title="demo")
    assert out == tmp_path / "index.html"
    page = out.read_text(encoding="utf-8")
    assert '<a href="a.html">Page A</a>' in page and "what A shows" in page
    assert '<a href="b &amp; c.json">Data &lt;1&gt;</a>' in page and "<title>demo</title>" in page
    assert "<script" not in page  # no plots: no plotly.js
    with pytest.raises(MissingFileError, match="missing.html"):
        write_index(tmp_path, [("missing.html", "M", "m")])
    with pytest.raises(ValueError, match="inside"):
        write_index(tmp_path, [("../a.html", "A", "a")])
    with pytest.raises(ValueError, match="at least one"):
        write_index(tmp_path, [])
