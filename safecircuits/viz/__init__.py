"""Interactive plotly visualisations of circuits and an offline HTML circuit report."""

from safecircuits.viz.circuits import (
    circuit_report_html,
    components_html,
    faithfulness_figure,
    head_heatmap,
    neuron_bar,
    overlap_figure,
    training_curves,
)

__all__ = [
    "circuit_report_html",
    "components_html",
    "faithfulness_figure",
    "head_heatmap",
    "neuron_bar",
    "overlap_figure",
    "training_curves",
]
