"""Figure 7(a): best-of-N win rate against the reference as a function of N, one line per run; in the
embedded world a second panel under its oracle reward (the answers' true quality). With a reward model
trained by the DAG, its held-out pair accuracy is in the title of the panel it scored.

Plotted data (`plotted`): panel "reward model" (the left lines, and a row of the reward model's
held-out accuracy) and "oracle" (picked by the oracle; series ending in PICKED_BY_RM: picked by the
reward model)."""

from __future__ import annotations

from matplotlib.ticker import FixedLocator, NullLocator

from gemsft.report.figures import FigureData, rows_for, select_model
from gemsft.report.figures.plotted import record
from gemsft.report.figures.style import ci_band, label_axes, new_figure, run_color, run_label, run_marker, sorted_runs
from gemsft.report.reward_accuracy import (METRIC as RM_ACCURACY, SERIES as RM_ACCURACY_SERIES, accuracy_text,
                                          figure_accuracy)

YLABELS = {"win_rate": "Win rate vs reference (%)", "hard_win_rate": "Hard win rate vs reference (%)",
           "bon_reward": "Best-of-N reward (reward-model score)"}
# metric -> (best-of-N picked by the oracle, picked by the reward model), both scored by the oracle
ORACLE_METRICS = {"win_rate": ("oracle_win_rate", "rm_selected_oracle_win_rate"),
                  "hard_win_rate": ("oracle_hard_win_rate", "rm_selected_oracle_hard_win_rate"),
                  "bon_reward": ("oracle_bon_reward", "rm_selected_oracle_reward")}
ORACLE_YLABELS = {"win_rate": "Oracle win rate vs reference (%)",
                  "hard_win_rate": "Oracle hard win rate vs reference (%)",
                  "bon_reward": "Best-of-N true quality (oracle logit)"}
RM_PANEL, ORACLE_PANEL = "reward model", "oracle"
PICKED_BY_RM = ", picked by the reward model"


def _chat_rows(df, metric: str | None):
    """The chat rows of a metric that only the embedded world has: none (not an error) elsewhere."""
    return df[(df["task"] == "chat") & (df["metric"] == metric)].dropna(subset=["k"])


def _lines(fig, ax, rows, panel: str, linestyle: str = "-", labelled: bool = True, band: bool = True,
           series_suffix: str = "") -> None:
    for objective, beta in sorted_runs(rows):
        run = rows[(rows["objective"] == objective) & (rows["beta"] == beta)].sort_values("k")
        color = run_color(objective, beta)
        ax.plot(run["k"].to_numpy(), run["value"].to_numpy(), color=color, marker=run_marker(objective),
                markersize=5, linewidth=1.6, linestyle=linestyle,
                label=run_label(objective, beta) if labelled else "_nolegend_")
        if band:
            ci_band(ax, run["k"], run["ci_low"], run["ci_high"], color=color)
        record(fig, panel, run_label(objective, beta) + series_suffix, run["k"], run["value"],
               run["ci_low"] if band else None, run["ci_high"] if band else None, objective=objective, beta=beta,
               task="chat", metric=str(run["metric"].iloc[0]))


def _log2_axis(ax, ks) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{k:g}" for k in ks])
    ax.set_xlim(ks[0] / 1.25, ks[-1] * 1.25)


def draw(data: FigureData, options: dict | None = None):
    options = dict(options or {})
    df, model = select_model(data.summary, options)
    metric = options.get("metric", "win_rate")
    rows = rows_for(df, "chat", metric).dropna(subset=["k"])
    if rows.empty:
        raise ValueError(f"summary has no rows for task 'chat', metric {metric!r} with a sample count k")
    by_oracle, by_rm = ORACLE_METRICS.get(metric, (None, None))
    oracle = _chat_rows(df, by_oracle)
    fig, axes = new_figure(12.0 if len(oracle) else 6.4, 4.4, ncols=2 if len(oracle) else 1)
    ax = axes[0, 0]
    ks = sorted(rows["k"].unique())
    _lines(fig, ax, rows, RM_PANEL)
    _log2_axis(ax, ks)
    xlabel = "Number of samples N (best-of-N, log2 scale)"
    title = f"Best-of-N scaling on chat ({model})"
    accuracy = figure_accuracy(df)
    if accuracy is not None:  # how far the reward model that picked and scored these can be trusted
        title += f"\n{accuracy_text(accuracy)}"
        record(fig, RM_PANEL, RM_ACCURACY_SERIES, "", *accuracy, task="chat", metric=RM_ACCURACY)
    label_axes(ax, xlabel, YLABELS.get(metric, metric), title)
    ax.legend(loc="best", fontsize=8.5)
    if len(oracle):
        right = axes[0, 1]
        _lines(fig, right, oracle, ORACLE_PANEL)
        picked_by_rm = _chat_rows(df, by_rm)
        # Picked by the reward model: no band, so the two families of lines stay readable.
        _lines(fig, right, picked_by_rm, ORACLE_PANEL, linestyle="--", labelled=False, band=False,
               series_suffix=PICKED_BY_RM)
        _log2_axis(right, sorted(set(oracle["k"]) | set(picked_by_rm["k"])))
        right.plot([], [], color="black", linestyle="-", label="picked by the oracle")
        right.plot([], [], color="black", linestyle="--", label="picked by the reward model")
        label_axes(right, xlabel, ORACLE_YLABELS[metric], f"Under the world's oracle reward ({model})")
        right.legend(loc="best", fontsize=8.5)
    return fig
