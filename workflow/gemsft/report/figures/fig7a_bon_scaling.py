"""Figure 7(a): best-of-N win rate against the reference as a function of N, one line per run."""

from __future__ import annotations

from matplotlib.ticker import FixedLocator, NullLocator

from gemsft.report.figures import FigureData, rows_for, select_model
from gemsft.report.figures.style import ci_band, label_axes, new_figure, run_color, run_label, run_marker, sorted_runs


def draw(data: FigureData, options: dict | None = None):
    options = dict(options or {})
    df, model = select_model(data.summary, options)
    metric = options.get("metric", "win_rate")
    rows = rows_for(df, "chat", metric).dropna(subset=["k"])
    if rows.empty:
        raise ValueError(f"summary has no rows for task 'chat', metric {metric!r} with a sample count k")
    fig, axes = new_figure(6.4, 4.4)
    ax = axes[0, 0]
    ks = sorted(rows["k"].unique())
    for objective, beta in sorted_runs(rows):
        run = rows[(rows["objective"] == objective) & (rows["beta"] == beta)].sort_values("k")
        color = run_color(objective, beta)
        ax.plot(run["k"].to_numpy(), run["value"].to_numpy(), color=color, marker=run_marker(objective),
                markersize=5, linewidth=1.6, label=run_label(objective, beta))
        ci_band(ax, run["k"], run["ci_low"], run["ci_high"], color=color)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{k:g}" for k in ks])
    ax.set_xlim(ks[0] / 1.25, ks[-1] * 1.25)
    ylabel = {"win_rate": "Win rate vs reference (%)", "hard_win_rate": "Hard win rate vs reference (%)",
              "bon_reward": "Best-of-N reward (reward-model score)"}.get(metric, metric)
    label_axes(ax, "Number of samples N (best-of-N, log2 scale)", ylabel,
               f"Best-of-N scaling on chat ({model})")
    ax.legend(loc="best", fontsize=8.5)
    return fig
