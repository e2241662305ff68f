"""The reward model's held-out pair accuracy beside every number it scored (gemsft.report.reward_accuracy):
in the beta-sweep table, in the paper-vs-reproduction rows of chat win rates, in the titles and plotted
data of Figures 6, 7(a) and 12, and in the captions of each; and nowhere when no reward model was
trained here (a hub reward model has no held-out pairs)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from gemsft.report import claims, tables  # noqa: E402
from gemsft.report.figures import FigureData, draw_figure  # noqa: E402
from gemsft.report.figures.plotted import plotted  # noqa: E402
from gemsft.report.labels import objective_label  # noqa: E402
from gemsft.report.registry import FIGURE_CAPTIONS, TABLE_CAPTIONS  # noqa: E402
from gemsft.report.reward_accuracy import SERIES, TITLE  # noqa: E402

from test_figures import RUNS, synthetic_summary  # noqa: E402
from test_report_figure_data import world_summary  # noqa: E402

WIN_RATE_FIGURES = ("fig6_diversity_vs_winrate", "fig7a_bon_scaling")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def accuracy_row(summary: pd.DataFrame, objective: str, beta: str, model: str = "tiny") -> pd.Series:
    sel = summary[(summary.model == model) & (summary.objective == objective) & (summary.beta == beta)
                  & (summary.metric == "reward_model_accuracy")]
    assert len(sel) == 1
    return sel.iloc[0]


def cell(row: pd.Series) -> str:
    """The table's "value ± larger side of the interval", derived here from the summary row."""
    half = max(row.value - row.ci_low, row.ci_high - row.value)
    return f"{row.value:.1f} ± {half:.1f}"


def test_beta_sweep_has_the_accuracy_of_the_reward_model_behind_each_run():
    summary = world_summary()
    df = tables.table3_beta_sweep(summary)
    assert TITLE in df.columns
    runs = [(o, b) for o, b in RUNS if o in ("ce", "gem", "gem_log_sigmoid")]
    assert df["run"].tolist() == [objective_label(o, b) for o, b in runs]
    assert df[TITLE].tolist() == [cell(accuracy_row(summary, o, b)) for o, b in runs]
    assert TITLE not in tables.table3_beta_sweep(synthetic_summary()).columns


def test_comparison_puts_the_accuracy_beside_every_reward_model_number_and_nowhere_else():
    summary = world_summary()
    df = claims.paper_vs_reproduction(summary, claims.load_paper())
    columns = list(claims.COMPARISON_COLUMNS)
    after = columns.index("our run") + 1
    assert list(df.columns) == columns[:after] + [TITLE] + columns[after:]
    labels = {objective_label(o, b): (o, b) for o, b in RUNS}
    scored = df["what"].str.contains(": chat win rate, ") & (df["ours"] != "—")
    assert scored.sum() >= 4  # CE and GEM, one sample and BoN@32
    for row in df[scored].to_dict("records"):
        assert row[TITLE] == cell(accuracy_row(summary, *labels[row["our run"]])), row
    assert (df.loc[~scored, TITLE] == "").all()
    assert list(claims.paper_vs_reproduction(synthetic_summary(), claims.load_paper()).columns) == columns


@pytest.mark.parametrize("name", WIN_RATE_FIGURES)
def test_win_rate_figures_give_the_accuracy_in_the_title_and_their_data(name):
    summary = world_summary()
    fig = draw_figure(name, FigureData(summary=summary), {})
    first = accuracy_row(summary, *RUNS[0])  # one reward model scores every run; the summary's first row
    assert f"held-out pair accuracy (chat): 61.2% [{first.ci_low:.1f}, {first.ci_high:.1f}]" in fig.axes[0].get_title()
    (row,) = plotted(fig)[lambda t: t.series == SERIES].itertuples(index=False)
    assert (row.metric, row.value, row.ci_low, row.ci_high) == ("reward_model_accuracy", first.value, first.ci_low,
                                                                 first.ci_high)
    plt.close(fig)
    fig = draw_figure(name, FigureData(summary=synthetic_summary()), {})
    assert "held-out" not in fig.axes[0].get_title() and SERIES not in set(plotted(fig).series)


def test_model_gains_give_each_models_accuracy():
    summary = world_summary(models=("qwen-3b", "gemma-9b"))
    fig = draw_figure("fig12_model_gains", FigureData(summary=summary), {})
    assert "held-out pair accuracy (chat): gemma-9b 61.2%, qwen-3b 61.2%" in fig.axes[0].get_title()
    rows = plotted(fig)[lambda t: t.series == SERIES]
    assert rows.x.tolist() == ["gemma-9b", "qwen-3b"] and (rows.value == 61.25).all()


@pytest.mark.parametrize("caption", [TABLE_CAPTIONS["beta_sweep"], TABLE_CAPTIONS["paper_vs_reproduction"],
                                     *(FIGURE_CAPTIONS[name] for name in (*WIN_RATE_FIGURES, "fig12_model_gains"))])
def test_captions_of_win_rates_say_where_the_accuracy_is(caption):
    assert "held out from its training" in caption or "held-out pair accuracy" in caption
