"""The objectives comparison's pass@k curves: pass@k against k on the code task the claims judge pass@k
on (the world's code family, HumanEval with real data), one line per run with its band, CE drawn
thicker with a black outline, the ten objectives in the frontier figure's colours.

Plotted data (`plotted`): one panel named after the code task, x = k, one series per run."""

from __future__ import annotations

import matplotlib.patheffects as path_effects
from matplotlib.ticker import FixedLocator, NullLocator

from gemsft.report.comparison import REFERENCE, code_task, run_order
from gemsft.report.figures import FigureData, rows_for, select_model
from gemsft.report.figures.objectives_frontier import HIGHLIGHT, objective_color, objective_marker, source_of
from gemsft.report.figures.plotted import record
from gemsft.report.figures.style import ci_band, label_axes, new_figure, run_label, sorted_runs
from gemsft.report.labels import TASK_NAMES


def draw(data: FigureData, options: dict | None = None):
    options = dict(options or {})
    df, model = select_model(data.summary, options)
    task = code_task(source_of(df, options))
    rows = rows_for(df, task, "pass_at_k").dropna(subset=["k"])
    if rows.empty:
        raise ValueError(f"summary has no rows for task {task!r}, metric 'pass_at_k' with a sample count k")
    fig, axes = new_figure(7.4, 4.8)
    ax = axes[0, 0]
    ks = sorted(rows["k"].unique())
    for objective, beta in sorted(sorted_runs(rows), key=lambda run: run_order(*run)):
        run = rows[(rows["objective"] == objective) & (rows["beta"] == beta)].sort_values("k")
        color, reference = objective_color(objective, beta), objective == REFERENCE
        effects = [path_effects.Stroke(linewidth=4.2, foreground=HIGHLIGHT), path_effects.Normal()] if reference else None
        (line,) = ax.plot(run["k"].to_numpy(), run["value"].to_numpy(), color=color, marker=objective_marker(objective),
                          markersize=5.5 if reference else 4.5, linewidth=2.6 if reference else 1.4,
                          zorder=4 if reference else 3, label=run_label(objective, beta), path_effects=effects)
        ci_band(ax, run["k"], run["ci_low"], run["ci_high"], color=color, alpha=0.12)
        record(fig, task, line.get_label(), run["k"], run["value"], run["ci_low"], run["ci_high"],
               objective=objective, beta=beta, task=task, metric="pass_at_k")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{k:g}" for k in ks])
    if rows["value"].max() <= 0:  # nothing solved: say so, not ±0.04
        ax.set_ylim(-2, 100)
        ax.text(0.5, 0.5, "no problem solved by any run", transform=ax.transAxes, ha="center", color="0.4")
    label_axes(ax, "Number of samples k (log scale)", "pass@k (%)",
               f"pass@k on {TASK_NAMES.get(task, task)}, every objective ({model}); 95% bands")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8.5)
    return fig
