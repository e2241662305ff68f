"""Figure 9: l2 distance of each fine-tuned model's parameters from the pre-trained ones.

Plotted data (`plotted`): one panel, "parameters", one bar per run (x = its label)."""

from __future__ import annotations

import numpy as np

from gemsft.report.figures import FigureData, rows_for, select_model
from gemsft.report.figures.plotted import record
from gemsft.report.figures.style import error_bars, label_axes, new_figure, run_color, run_label, sorted_runs


def draw(data: FigureData, options: dict | None = None):
    options = dict(options or {})
    df, model = select_model(data.summary, options)
    rows = rows_for(df, "parameters", "l2_distance_from_base")
    rows = rows[rows["objective"] != "base"]
    if rows.empty:
        raise ValueError("summary has no fine-tuned run for task 'parameters', metric 'l2_distance_from_base'")
    runs = sorted_runs(rows)
    fig, axes = new_figure(max(4.8, 0.85 * len(runs) + 2.0), 4.4)
    ax = axes[0, 0]
    labels = []
    for x, (objective, beta) in enumerate(runs):
        r = rows[(rows["objective"] == objective) & (rows["beta"] == beta)].iloc[0]
        label = run_label(objective, beta)
        labels.append(label)
        ax.bar([x], [r["value"]], width=0.7, color=run_color(objective, beta), label=label)
        error_bars(ax, [x], [r["value"]], [r["ci_low"]], [r["ci_high"]], label=f"_err {label}")
        record(fig, "parameters", label, label, r["value"], r["ci_low"], r["ci_high"], objective=objective,
               beta=beta, task="parameters", metric="l2_distance_from_base")
    ax.set_xticks(np.arange(len(runs)), labels, rotation=30, ha="right")
    ax.grid(axis="x", visible=False)
    label_axes(ax, None, "‖θ − θ₀‖₂ (l2 norm of the parameter change)",
               f"Distance from the pre-trained parameters ({model})")
    return fig
