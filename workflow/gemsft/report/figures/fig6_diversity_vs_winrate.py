"""Figure 6: output diversity against best-of-N win rate, one point per fine-tuned run. With a reward
model trained by the DAG, its held-out pair accuracy is in the title: it picked and scored the samples.

Plotted data (`plotted`): one panel named after the diversity metric on the x axis; per run, x is its
diversity (with x_low, x_high) and value its win rate; and a row of the reward model's held-out
accuracy."""

from __future__ import annotations

import numpy as np

from gemsft.report.figures import FigureData, rows_for, select_model
from gemsft.report.figures.plotted import record
from gemsft.report.figures.style import error_bars, label_axes, new_figure, place_point_labels, run_color, run_label, run_marker, sorted_runs
from gemsft.report.reward_accuracy import (METRIC as RM_ACCURACY, SCORED_BY_REWARD_MODEL, SERIES as RM_ACCURACY_SERIES,
                                          accuracy_text, figure_accuracy)

DIVERSITY_LABELS = {
    "sbert_diversity": "SBERT diversity (100 × (1 − mean cosine similarity))",
    "self_bleu_diversity": "Self-BLEU diversity (100 − Self-BLEU)",
    "ngram_diversity": "N-gram diversity (% distinct 1-3-grams)",
}


def draw(data: FigureData, options: dict | None = None):
    options = dict(options or {})
    df, model = select_model(data.summary, options)
    diversity_metric = options.get("diversity_metric", "sbert_diversity")
    win_metric = options.get("metric", "win_rate")
    div = rows_for(df, "chat", diversity_metric)
    win = rows_for(df, "chat", win_metric).dropna(subset=["k"])
    if win.empty:
        raise ValueError(f"summary has no rows for task 'chat', metric {win_metric!r} with a sample count k")
    n = float(options["n"]) if options.get("n") is not None else float(win["k"].max())
    win = rows_for(win, "chat", win_metric, k=n)
    merged = win.merge(div, on=["objective", "beta"], suffixes=("_y", "_x"))
    if merged.empty:
        raise ValueError(f"no run has both chat {win_metric} at N={n:g} and chat {diversity_metric}")

    fig, axes = new_figure(6.6, 4.8)
    ax = axes[0, 0]
    xs, ys, texts, colors = [], [], [], []
    for objective, beta in sorted_runs(merged):
        r = merged[(merged["objective"] == objective) & (merged["beta"] == beta)].iloc[0]
        color = run_color(objective, beta)
        label = run_label(objective, beta)
        ax.scatter([r["value_x"]], [r["value_y"]], color=color, marker=run_marker(objective), s=55,
                   zorder=4, label=label, edgecolors="white", linewidths=0.6)
        error_bars(ax, [r["value_x"]], [r["value_y"]], [r["ci_low_y"]], [r["ci_high_y"]], direction="y",
                   color=color, label=f"_yerr {label}")
        error_bars(ax, None, [r["value_x"]], [r["ci_low_x"]], [r["ci_high_x"]], direction="x",
                   y=[r["value_y"]], color=color, label=f"_xerr {label}")
        record(fig, diversity_metric, label, r["value_x"], r["value_y"], r["ci_low_y"], r["ci_high_y"],
               objective=objective, beta=beta, task="chat", metric=win_metric, x_low=r["ci_low_x"],
               x_high=r["ci_high_x"])
        xs.append(r["value_x"]); ys.append(r["value_y"]); texts.append(label); colors.append(color)
    _pad_limits(ax, merged)
    title = f"Diversity vs best-of-{n:g} win rate on chat ({model})"
    accuracy = figure_accuracy(df) if win_metric in SCORED_BY_REWARD_MODEL else None
    if accuracy is not None:  # in the title: the axes' texts are the points' labels
        title += f"\n{accuracy_text(accuracy)}"
        record(fig, diversity_metric, RM_ACCURACY_SERIES, "", *accuracy, task="chat", metric=RM_ACCURACY)
    label_axes(ax, DIVERSITY_LABELS.get(diversity_metric, diversity_metric),
               f"Best-of-{n:g} win rate vs reference (%)", title)
    place_point_labels(ax, xs, ys, texts, colors)
    return fig


def _pad_limits(ax, merged) -> None:
    """Axis limits that hold every point, interval and (to the right) its label."""
    for column, setter, right_pad in (("x", ax.set_xlim, 0.25), ("y", ax.set_ylim, 0.12)):
        values = np.concatenate([merged[f"{c}_{column}"].to_numpy(dtype=float)
                                 for c in ("value", "ci_low", "ci_high")])
        values = values[np.isfinite(values)]
        lo, hi = float(values.min()), float(values.max())
        span = max(hi - lo, 1e-6 + 0.05 * max(abs(hi), 1.0))
        setter(lo - 0.12 * span, hi + right_pad * span)
