"""The objectives comparison's quality-diversity frontier: best-of-32 win rate (the claims' quality: the
oracle's in the world, the reward model's with real data) against Sentence-BERT diversity (left) and
the Vendi score (right), one point per run with the summary's intervals on both axes, CE outlined and
crossed by dashed lines through its values. A panel whose diversity metric the summary lacks is left
out; none at all is an error naming them. Also the colours and markers of the ten objectives, which
the pass@k figure of the comparison shares (the paper's figures know only the paper's six).

Plotted data (`plotted`): one panel per diversity metric (named after it); per run, x is its
diversity (with x_low, x_high) and value its win rate with its interval."""

from __future__ import annotations

import numpy as np

from gemsft.report.comparison import REFERENCE, quality_target, run_order
from gemsft.report.figures import FigureData, rows_for, select_model
from gemsft.report.figures.plotted import record
from gemsft.report.figures.style import error_bars, label_axes, new_figure, place_point_labels, run_color, run_label, run_marker, sorted_runs
from gemsft.report.labels import METRIC_NAMES

PANELS = ("sbert_diversity", "vendi_score")
AXIS_LABELS = {"sbert_diversity": "Sentence-BERT diversity (100 × (1 − mean cosine similarity))",
               "vendi_score": "Vendi score (effective number of distinct responses)"}
#: the newer objectives' colours and markers, apart from the paper's six (style.py)
NEWER = {"dft": ("#17becf", "<"), "ts2": ("#e377c2", ">"), "eaft": ("#bcbd22", "h"), "asft": ("#7b4173", "p")}
HIGHLIGHT = "black"  # CE's outline


def objective_color(objective: str, beta) -> str:
    return NEWER[objective][0] if objective in NEWER else run_color(objective, beta)


def objective_marker(objective: str) -> str:
    return NEWER[objective][1] if objective in NEWER else run_marker(objective)


def source_of(summary, options: dict) -> str:
    """The data source: options["source"] (the rule gives it), else the world where the summary has
    the oracle's win rates."""
    if options.get("source"):
        return options["source"]
    return "world" if (summary["metric"] == "oracle_win_rate").any() else "real"


def draw(data: FigureData, options: dict | None = None):
    options = dict(options or {})
    df, model = select_model(data.summary, options)
    task, win_metric, n = quality_target(source_of(df, options))
    win = rows_for(df, task, win_metric, k=n)
    panels = [m for m in PANELS if ((df["task"] == "chat") & (df["metric"] == m)).any()]
    if not panels:
        raise ValueError(f"summary has no rows for task 'chat', metric {' or '.join(map(repr, PANELS))}")
    fig, axes = new_figure(6.0 * len(panels) + 0.4, 5.0, 1, len(panels), sharey=True)
    for ax, metric in zip(axes[0], panels):
        merged = win.merge(rows_for(df, "chat", metric), on=["objective", "beta"], suffixes=("_y", "_x"))
        if merged.empty:
            raise ValueError(f"no run has both {task} {win_metric} at N={n} and chat {metric}")
        _panel(fig, ax, merged, metric, task, win_metric)
        label_axes(ax, AXIS_LABELS.get(metric, METRIC_NAMES.get(metric, metric)),
                   f"Best-of-{n} {'oracle ' if win_metric.startswith('oracle') else ''}win rate (%)",
                   METRIC_NAMES.get(metric, metric))
    fig.suptitle(f"Quality against diversity, every objective ({model}); 95% intervals")
    return fig


def _panel(fig, ax, merged, metric: str, task: str, win_metric: str) -> None:
    xs, ys, texts, colors = [], [], [], []
    for objective, beta in sorted(sorted_runs(merged), key=lambda run: run_order(*run)):
        r = merged[(merged["objective"] == objective) & (merged["beta"] == beta)].iloc[0]
        color, label = objective_color(objective, beta), run_label(objective, beta)
        reference = objective == REFERENCE
        ax.scatter([r["value_x"]], [r["value_y"]], color=color, marker=objective_marker(objective),
                   s=120 if reference else 55, zorder=5 if reference else 4, label=label,
                   edgecolors=HIGHLIGHT if reference else "white", linewidths=1.8 if reference else 0.6)
        error_bars(ax, [r["value_x"]], [r["value_y"]], [r["ci_low_y"]], [r["ci_high_y"]], direction="y",
                   color=color, label=f"_yerr {label}")
        error_bars(ax, None, [r["value_x"]], [r["ci_low_x"]], [r["ci_high_x"]], direction="x",
                   y=[r["value_y"]], color=color, label=f"_xerr {label}")
        record(fig, metric, label, r["value_x"], r["value_y"], r["ci_low_y"], r["ci_high_y"], objective=objective,
               beta=beta, task=task, metric=win_metric, x_low=r["ci_low_x"], x_high=r["ci_high_x"])
        if reference:
            ax.axhline(r["value_y"], color=HIGHLIGHT, linestyle="--", linewidth=0.8, zorder=1, label="_ce win rate")
            ax.axvline(r["value_x"], color=HIGHLIGHT, linestyle="--", linewidth=0.8, zorder=1, label="_ce diversity")
        xs.append(r["value_x"]); ys.append(r["value_y"]); texts.append(label); colors.append(color)
    _pad_limits(ax, merged)
    place_point_labels(ax, xs, ys, texts, colors)


def _pad_limits(ax, merged) -> None:
    """Axis limits that hold every point, interval and (to the right) its label."""
    for column, setter, right_pad in (("x", ax.set_xlim, 0.3), ("y", ax.set_ylim, 0.12)):
        values = np.concatenate([merged[f"{c}_{column}"].to_numpy(dtype=float) for c in ("value", "ci_low", "ci_high")])
        values = values[np.isfinite(values)]
        lo, hi = float(values.min()), float(values.max())
        span = max(hi - lo, 1e-6 + 0.05 * max(abs(hi), 1.0))
        setter(lo - 0.12 * span, hi + right_pad * span)
