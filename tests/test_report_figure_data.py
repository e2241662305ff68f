"""Each figure's plotted data (`figures/<name>.csv`, gemsft.report.figures.plotted): for every figure,
the table holds exactly the numbers its axes show (read back from the matplotlib artists: lines, bars,
points, error bars and bands), so the end-to-end test can check a figure's data instead of its PNG;
the table survives CSV; a figure module that records nothing fails its job."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection, PolyCollection  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

from gemsft.report.claims import CLAIMS_COLUMNS  # noqa: E402
from gemsft.report.figures import FIGURES, FigureData, draw_figure  # noqa: E402
from gemsft.report.figures.plotted import COLUMNS, plotted, read_plotted, write_plotted  # noqa: E402
from gemsft.report.reward_accuracy import SERIES as RM_ACCURACY_SERIES  # noqa: E402

from test_figures import BON_K, RUNS, next_token_stats, synthetic_summary  # noqa: E402
from test_study_page import claim_rows  # noqa: E402

MULTI_MODEL = "fig12_model_gains"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def world_summary(models=("tiny",)) -> pd.DataFrame:
    """test_figures' synthetic summary with what the embedded world adds: the oracle's win rates and
    the trained reward model's held-out accuracy."""
    summary = synthetic_summary(models=models)
    extra = []
    for model in models:
        for i, (objective, beta) in enumerate(RUNS):
            for k in BON_K:
                for metric, value in (("oracle_win_rate", 30.0 + i + k), ("rm_selected_oracle_win_rate", 25.0 + i + k)):
                    extra.append({"model": model, "objective": objective, "beta": beta, "task": "chat",
                                  "metric": metric, "k": k, "value": value, "ci_low": value - 2.0,
                                  "ci_high": value + 3.0, "n_prompts": 80, "n_seeds": 2})
            extra.append({"model": model, "objective": objective, "beta": beta, "task": "chat",
                          "metric": "reward_model_accuracy", "k": None, "value": 61.25, "ci_low": 53.0,
                          "ci_high": 69.5 - i / 10, "n_prompts": 7, "n_seeds": 2})
    return pd.concat([summary, pd.DataFrame(extra)], ignore_index=True)


def figure_data(name: str) -> FigureData:
    claims = pd.DataFrame(claim_rows({"pass_at_100": "untestable", "math_greedy": "contradicted"}),
                          columns=CLAIMS_COLUMNS)
    models = ("qwen-3b", "gemma-9b") if name == MULTI_MODEL else ("tiny",)
    return FigureData(summary=world_summary(models), model_stats=next_token_stats(), claims=claims)


def data_axes(fig):
    return [ax for ax in fig.get_axes() if ax.get_visible()]


def drawn_numbers(fig) -> np.ndarray:
    """Every coordinate the figure's artists put on the axes."""
    found = []
    for ax in data_axes(fig):
        for line in ax.get_lines():
            found += [np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)]
        for container in ax.containers:
            if isinstance(container, BarContainer):
                found.append(np.array([p.get_height() for p in container.patches], dtype=float))
        for collection in ax.collections:
            if isinstance(collection, PathCollection):
                found.append(np.asarray(collection.get_offsets(), dtype=float).ravel())
            elif isinstance(collection, LineCollection):  # error bars
                found += [np.asarray(seg, dtype=float).ravel() for seg in collection.get_segments()]
            elif isinstance(collection, PolyCollection):  # CI bands
                found += [path.vertices.ravel() for path in collection.get_paths()]
    numbers = np.concatenate(found) if found else np.array([])
    return numbers[np.isfinite(numbers)]


def drawn_interval_ends(fig) -> np.ndarray:
    """The ends of every interval the axes show: error bars (the y ends of a vertical bar, the x ends
    of a horizontal one) and the y of CI bands' outlines."""
    found = []
    for ax in data_axes(fig):
        for collection in ax.collections:
            if isinstance(collection, LineCollection):
                for seg in collection.get_segments():
                    seg = np.asarray(seg, dtype=float)
                    if len(seg) == 2 and seg[0, 0] == seg[1, 0]:
                        found.append(seg[:, 1])
                    elif len(seg) == 2 and seg[0, 1] == seg[1, 1]:
                        found.append(seg[:, 0])
            elif isinstance(collection, PolyCollection):
                found += [path.vertices[:, 1] for path in collection.get_paths()]
    numbers = np.concatenate(found) if found else np.array([])
    return numbers[np.isfinite(numbers)]


def labelled_series(fig) -> list[tuple[str, np.ndarray]]:
    """What a reader sees as data: the values of every labelled data line (not axhline-style
    reference lines), bar group and point group."""
    series = []
    for ax in data_axes(fig):
        for line in ax.get_lines():
            if not line.get_label().startswith("_") and line.get_transform() == ax.transData and len(line.get_ydata()):
                series.append((line.get_label(), np.asarray(line.get_ydata(), dtype=float)))
        for container in ax.containers:
            if isinstance(container, BarContainer):
                series.append((container.get_label(), np.array([p.get_height() for p in container.patches], float)))
        for collection in ax.collections:
            if isinstance(collection, PathCollection) and not collection.get_label().startswith("_"):
                series.append((collection.get_label(), np.asarray(collection.get_offsets(), dtype=float)[:, 1]))
    return series


def contained(values, numbers) -> list[float]:
    """The finite `values` not among `numbers`."""
    return [v for v in np.asarray(values, dtype=float) if math.isfinite(v)
            and not np.isclose(numbers, v, rtol=1e-9, atol=1e-12).any()]


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_records_what_its_axes_show(name):
    fig = draw_figure(name, figure_data(name), {})
    table = plotted(fig)
    assert list(table.columns) == list(COLUMNS) and len(table) > 0
    # The table holds nothing the axes do not show (the reward model's accuracy is in a title)...
    drawn = table[table.series != RM_ACCURACY_SERIES]
    numbers = drawn_numbers(fig)
    for column in ("value", "ci_low", "ci_high", "x_low", "x_high"):
        assert not contained(drawn[column], numbers), (column, contained(drawn[column], numbers)[:5])
    # ...and every labelled series the axes show is in the table.
    recorded = table["value"].to_numpy(dtype=float)
    for label, values in labelled_series(fig):
        assert not contained(values, recorded), (label, contained(values, recorded)[:5])
    # ...and every interval the axes show is in it.
    ends = table[["ci_low", "ci_high", "x_low", "x_high", "value"]].to_numpy(dtype=float).ravel()
    ends = ends[np.isfinite(ends)]
    assert not contained(drawn_interval_ends(fig), ends), contained(drawn_interval_ends(fig), ends)[:5]
    # Intervals, where drawn, hold their value.
    ranged = table.dropna(subset=["ci_low", "ci_high"])
    assert (ranged.ci_low <= ranged.value + 1e-9).all() and (ranged.value <= ranged.ci_high + 1e-9).all()


def test_the_check_sees_a_series_the_table_lacks():
    """The check above can fail: a line drawn but not recorded, or recorded but not drawn."""
    fig = draw_figure("fig7a_bon_scaling", figure_data("fig7a_bon_scaling"), {})
    fig.axes[0].plot([1, 2], [123.0, 456.0], label="drawn, not recorded")
    recorded = plotted(fig)["value"].to_numpy(dtype=float)
    missing = [label for label, values in labelled_series(fig) if contained(values, recorded)]
    assert missing == ["drawn, not recorded"]
    assert contained([789.0], drawn_numbers(fig)) == [789.0]


def test_plotted_data_survives_csv(tmp_path):
    fig = draw_figure("fig7a_bon_scaling", figure_data("fig7a_bon_scaling"), {})
    path = write_plotted(fig, tmp_path / "fig7a_bon_scaling.csv")
    back = read_plotted(path)
    table = plotted(fig)
    assert list(back.columns) == list(COLUMNS) and len(back) == len(table)
    assert set(back.beta) == {beta for _, beta in RUNS} | {""}  # "na" stays a beta
    np.testing.assert_allclose(back.value, table.value.astype(float))
    # The right panel's reward-model picks are drawn without a band: NaN, not 0.
    picked = back[back.series.str.endswith(", picked by the reward model")]
    assert len(picked) == len(RUNS) * len(BON_K) and picked.ci_low.isna().all()
    assert sorted({float(x) for x in back[back.panel == "reward model"].x if x}) == list(BON_K)


def test_a_figure_that_records_nothing_is_an_error(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    with pytest.raises(ValueError, match="fig_unrecorded recorded no plotted data"):
        write_plotted(fig, tmp_path / "fig.csv", "fig_unrecorded")
    assert not list(tmp_path.iterdir())
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other.csv: not a figure's plotted data"):
        read_plotted(tmp_path / "other.csv")
