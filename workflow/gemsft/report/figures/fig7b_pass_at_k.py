"""Figure 7(b): pass@k against k for the code tasks, one panel per task, one line per run.

Plotted data (`plotted`): one panel per code task (named after it), x = k."""

from __future__ import annotations

from matplotlib.ticker import FixedLocator, NullLocator

from gemsft.report.figures import FigureData, rows_for, select_model
from gemsft.report.figures.plotted import record
from gemsft.report.figures.style import ci_band, label_axes, new_figure, run_color, run_label, run_marker, sorted_runs

TASK_TITLES = {"code": "Code (synthetic world)", "humaneval": "HumanEval"}


def draw(data: FigureData, options: dict | None = None):
    options = dict(options or {})
    df, model = select_model(data.summary, options)
    candidates = list(options.get("code_tasks", ("code", "humaneval")))
    rows = rows_for(df, candidates, "pass_at_k").dropna(subset=["k"])
    tasks = [t for t in candidates if t in set(rows["task"])]
    fig, axes = new_figure(5.4 * len(tasks) + 0.6, 4.4, 1, len(tasks), sharey=False)
    handles = {}
    for ax, task in zip(axes[0], tasks):
        task_rows = rows[rows["task"] == task]
        ks = sorted(task_rows["k"].unique())
        for objective, beta in sorted_runs(task_rows):
            run = task_rows[(task_rows["objective"] == objective) & (task_rows["beta"] == beta)].sort_values("k")
            color = run_color(objective, beta)
            (line,) = ax.plot(run["k"].to_numpy(), run["value"].to_numpy(), color=color,
                              marker=run_marker(objective), markersize=4.5, linewidth=1.5,
                              label=run_label(objective, beta))
            ci_band(ax, run["k"], run["ci_low"], run["ci_high"], color=color)
            record(fig, task, line.get_label(), run["k"], run["value"], run["ci_low"], run["ci_high"],
                   objective=objective, beta=beta, task=task, metric="pass_at_k")
            handles.setdefault(line.get_label(), line)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{k:g}" for k in ks])
        if task_rows["value"].max() <= 0:  # nothing solved (HumanEval for a tiny model): say so, not ±0.04
            ax.set_ylim(-2, 100)
            ax.text(0.5, 0.5, "no problem solved by any run", transform=ax.transAxes, ha="center", color="0.4")
        label_axes(ax, "Number of samples k (log scale)", "pass@k (%)", TASK_TITLES.get(task, task))
    if len(tasks) == 1:
        axes[0, 0].legend(loc="lower right", fontsize=8.5)
    else:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8.5)
    fig.suptitle(f"pass@k on code ({model})")
    return fig
