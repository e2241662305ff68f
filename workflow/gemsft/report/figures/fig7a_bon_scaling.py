"""Figure 7(a): best-of-N win rate against the reference as a function of N, one line per run; in the
embedded world a second panel under its oracle reward (the answers' true quality)."""

from __future__ import annotations

from matplotlib.ticker import FixedLocator, NullLocator

from gemsft.report.figures import FigureData, rows_for, select_model
from gemsft.report.figures.style import ci_band, label_axes, new_figure, run_color, run_label, run_marker, sorted_runs

YLABELS = {"win_rate": "Win rate vs reference (%)", "hard_win_rate": "Hard win rate vs reference (%)",
           "bon_reward": "Best-of-N reward (reward-model score)"}
# metric -> (best-of-N picked by the oracle, picked by the reward model), both scored by the oracle
ORACLE_METRICS = {"win_rate": ("oracle_win_rate", "rm_selected_oracle_win_rate"),
                  "hard_win_rate": ("oracle_hard_win_rate", "rm_selected_oracle_hard_win_rate"),
                  "bon_reward": ("oracle_bon_reward", "rm_selected_oracle_reward")}
ORACLE_YLABELS = {"win_rate": "Oracle win rate vs reference (%)",
                  "hard_win_rate": "Oracle hard win rate vs reference (%)",
                  "bon_reward": "Best-of-N true quality (oracle logit)"}


def _chat_rows(df, metric: str | None):
    """The chat rows of a metric that only the embedded world has: none (not an error) elsewhere."""
    return df[(df["task"] == "chat") & (df["metric"] == metric)].dropna(subset=["k"])


def _lines(ax, rows, linestyle: str = "-", labelled: bool = True, band: bool = True) -> None:
    for objective, beta in sorted_runs(rows):
        run = rows[(rows["objective"] == objective) & (rows["beta"] == beta)].sort_values("k")
        color = run_color(objective, beta)
        ax.plot(run["k"].to_numpy(), run["value"].to_numpy(), color=color, marker=run_marker(objective),
                markersize=5, linewidth=1.6, linestyle=linestyle,
                label=run_label(objective, beta) if labelled else "_nolegend_")
        if band:
            ci_band(ax, run["k"], run["ci_low"], run["ci_high"], color=color)


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
    _lines(ax, rows)
    _log2_axis(ax, ks)
    xlabel = "Number of samples N (best-of-N, log2 scale)"
    label_axes(ax, xlabel, YLABELS.get(metric, metric), f"Best-of-N scaling on chat ({model})")
    ax.legend(loc="best", fontsize=8.5)
    if len(oracle):
        right = axes[0, 1]
        _lines(right, oracle)
        picked_by_rm = _chat_rows(df, by_rm)
        # Picked by the reward model: no band, so the two families of lines stay readable.
        _lines(right, picked_by_rm, linestyle="--", labelled=False, band=False)
        _log2_axis(right, sorted(set(oracle["k"]) | set(picked_by_rm["k"])))
        right.plot([], [], color="black", linestyle="-", label="picked by the oracle")
        right.plot([], [], color="black", linestyle="--", label="picked by the reward model")
        label_axes(right, xlabel, ORACLE_YLABELS[metric], f"Under the world's oracle reward ({model})")
        right.legend(loc="best", fontsize=8.5)
    return fig
