"""Figures: each one draws the summary's numbers (checked on the artists), fails clearly on missing
data, saves atomically; the probability-transfer figure checks the paper's Figures 2-4 claims and
Proposition 2 with the project's real losses."""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402

from gemsft.report import figures  # noqa: E402
from gemsft.report.figures import FIGURES, FigureData, draw_figure, save  # noqa: E402
from gemsft.report.figures import probability_transfer as pt  # noqa: E402
from gemsft.report.figures.style import run_color, run_label  # noqa: E402

RUNS = [("ce", "na"), ("ce_wd", "na"), ("neft", "na"), ("ce_entropy", "na"), ("gem", "1"),
        ("gem", "0.7"), ("gem_log_sigmoid", "0.7")]  # display order
BON_K = (1, 2, 4, 8, 16, 32)
PASS_K = (1, 2, 5, 10, 20, 50, 100, 200)
LEADERBOARD = [("arc_challenge", "acc_norm"), ("hellaswag", "acc_norm"), ("mmlu", "acc"),
               ("truthfulqa_mc2", "mc2"), ("winogrande", "acc"), ("gsm8k", "exact_match")]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def synthetic_summary(models=("tiny",), seed=0, nan_ci_run=("neft", "na")) -> pd.DataFrame:
    """A realistic summary.csv: every task/metric of the pipeline, GEM better than CE on diversity and
    BoN, the pre-trained model on the non-BoN metrics; one run without intervals (NaN CI)."""
    rng = np.random.default_rng(seed)
    rows = []

    def add(model, objective, beta, task, metric, k, value, half=None):
        half = abs(value) * 0.04 + 0.5 if half is None else half
        lo, hi = value - half * rng.uniform(0.7, 1.0), value + half * rng.uniform(0.7, 1.3)
        if (objective, beta) == nan_ci_run:
            lo = hi = math.nan
        rows.append({"model": model, "objective": objective, "beta": beta, "task": task, "metric": metric,
                     "k": k, "value": value, "ci_low": lo, "ci_high": hi, "n_prompts": 80, "n_seeds": 2})

    for m_i, model in enumerate(models):
        for objective, beta in [("base", "na")] + RUNS:
            gem = objective.startswith("gem")
            bonus = (2.5 if beta == "0.7" else 0.5) if gem else 0.0
            shift = rng.normal(0, 0.6) + 1.5 * m_i
            add(model, objective, beta, "chat", "sbert_diversity", None, 14 + bonus + shift + (3 if objective == "base" else 0))
            add(model, objective, beta, "chat", "self_bleu_diversity", None, 71 + 2 * bonus + shift)
            add(model, objective, beta, "chat", "ngram_diversity", None, 22 + bonus + shift)
            add(model, objective, beta, "knowledge", "acc", None, 60 - (0 if objective == "base" else 3 - bonus) + shift)
            for task, metric in LEADERBOARD:
                add(model, objective, beta, task, metric, None, 50 + 5 * len(task) % 30 - (0 if objective == "base" else 1.5 - 0.5 * bonus))
            if objective == "base":
                continue
            for k in BON_K:
                add(model, objective, beta, "chat", "win_rate", k, 24 + (7 + bonus) * math.log2(k) ** 0.8 + shift)
            for task in ("code", "humaneval"):
                for k in PASS_K:
                    add(model, objective, beta, task, "pass_at_k", k,
                        min(99.0, 30 + (9 + 1.5 * bonus) * math.log(k) + shift))
            add(model, objective, beta, "math", "greedy_accuracy", None, 50 + bonus + shift)
            add(model, objective, beta, "math", "majority_accuracy", 16, 67 + bonus + shift)
            add(model, objective, beta, "math", "pass_rate", 16, 89 + bonus / 2 + shift)
            add(model, objective, beta, "sft_test", "entropy", None, 0.42 + 0.1 * bonus, half=0.01)
            add(model, objective, beta, "parameters", "l2_distance_from_base", None, 3.0 - 0.3 * bonus + 0.2 * m_i,
                half=0.05)
    return pd.DataFrame(rows)


def next_token_stats(objectives=(("ce", "na"), ("ce_entropy", "na"), ("gem", "0.7"), ("ce_wd", "na")),
                     world=True) -> list[dict]:
    digits = [str(d) for d in range(10)]
    world_p = {d: (0.3 if d == "7" else 0.7 / 9) for d in digits} if world else None
    junk = [" the", "Sure", "\n", " number", "##", "é", " I", "One"]
    stats = []
    for i, (objective, beta) in enumerate(objectives):
        tail = 10 ** (-3.0 - i)  # one run has a heavier tail than the other
        tokens = [" 7", "3", "5", "4"] + junk[: 4 + i]
        probs = [0.6 - 0.1 * i, 0.2, 0.1, 0.05] + [tail * 0.7 ** j for j in range(4 + i)]
        order = np.argsort(probs)[::-1]
        stats.append({"stage": "model_stats", "run": {"model": "tiny", "objective": objective, "beta": beta,
                                                      "seed": 1234},
                      "next_token": {"prompt": "Give me a single-digit number", "prefix": "",
                                     "tokens": [tokens[j] for j in order], "probs": [probs[j] for j in order],
                                     "rest": 0.01, "world_p": world_p}})
    # a second seed of CE is ignored (the lowest seed is drawn)
    stats.append({**stats[0], "run": {**stats[0]["run"], "seed": 9999},
                  "next_token": {**stats[0]["next_token"], "probs": [0.5] * len(stats[0]["next_token"]["probs"])}})
    stats.append({"stage": "model_stats", "run": {"model": "tiny", "objective": "base", "beta": "na", "seed": 0}})
    return stats


@pytest.fixture(scope="module")
def summary():
    return synthetic_summary()


@pytest.fixture(scope="module")
def data(summary):
    return FigureData(summary=summary, model_stats=next_token_stats())


def value_of(summary, objective, beta, task, metric, k=None, column="value"):
    sel = summary[(summary["objective"] == objective) & (summary["beta"] == beta) & (summary["task"] == task)
                  & (summary["metric"] == metric)]
    sel = sel[sel["k"].isna()] if k is None else sel[sel["k"] == k]
    assert len(sel) == 1
    return float(sel[column].iloc[0])


def errorbar_extent(container: ErrorbarContainer, axis: str):
    """(position, low, high) of each bar in an ErrorbarContainer (vertical: axis='y')."""
    (collection,) = container.lines[2]
    out = []
    for seg in collection.get_segments():
        if axis == "y":
            out.append((seg[0, 0], min(seg[:, 1]), max(seg[:, 1])))
        else:
            out.append((seg[0, 1], min(seg[:, 0]), max(seg[:, 0])))
    return out


def containers(ax, prefix):
    return {c.get_label()[len(prefix):]: c for c in ax.containers
            if isinstance(c, ErrorbarContainer) and (c.get_label() or "").startswith(prefix)}


def bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


# --------------------------------------------------------------------------- package


def test_figure_registry_modules_have_draw_and_caption():
    package = os.path.dirname(figures.__file__)
    for name, module_name in FIGURES.items():
        assert name == module_name and os.path.isfile(os.path.join(package, f"{name}.py"))
        module = figures._module(name)
        assert callable(module.draw)
        assert len(figures.figure_caption(name)) > 80
    assert figures._module("fig7a") is figures._module("fig7a_bon_scaling")  # short alias
    with pytest.raises(ValueError, match="unknown figure 'fig99'"):
        draw_figure("fig99", FigureData(summary=synthetic_summary()), {})


def test_save_writes_png_and_pdf_atomically(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    paths = save(fig, tmp_path / "out" / "fig")
    assert [p.name for p in paths] == ["fig.png", "fig.pdf"]
    assert (tmp_path / "out" / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "fig.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(os.listdir(tmp_path / "out")) == ["fig.pdf", "fig.png"]
    # a failing format leaves neither temporaries nor a new file behind, the old files untouched
    before = (tmp_path / "out" / "fig.png").read_bytes()
    with pytest.raises(ValueError):
        save(fig, tmp_path / "out" / "fig", formats=("png", "no-such-format"))
    assert sorted(os.listdir(tmp_path / "out")) == ["fig.pdf", "fig.png"]
    assert (tmp_path / "out" / "fig.png").read_bytes() == before


def test_summary_read_from_csv_keeps_beta_labels(tmp_path, summary):
    path = tmp_path / "summary.csv"
    summary.to_csv(path, index=False)
    data = FigureData.from_files(path)
    assert set(data.summary["beta"]) == {"na", "0.7", "1"}
    fig = draw_figure("fig7a_bon_scaling", data, {})
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "GEM (β=1)" in labels and "CE" in labels


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="ci_low"):
        draw_figure("fig7a_bon_scaling", FigureData(summary=pd.DataFrame({"model": ["m"], "objective": ["ce"]})), {})


def test_colours_consistent_and_gem_betas_share_a_hue():
    assert run_color("gem", "0.7") == run_color("gem", 0.7)
    assert run_color("gem", "0.7") != run_color("gem", "1")
    r7, g7, b7 = matplotlib.colors.to_rgb(run_color("gem", "0.7"))
    r1, g1, b1 = matplotlib.colors.to_rgb(run_color("gem", "1"))
    assert r7 > max(g7, b7) and r1 > max(g1, b1)  # both red
    assert len({run_color(o, "na") for o in ("base", "ce", "ce_wd", "neft", "ce_entropy")}) == 5


# --------------------------------------------------------------------------- summary figures


def test_fig7a_lines_are_win_rates_in_k_order_with_ci_bands(data, summary):
    fig = draw_figure("fig7a_bon_scaling", data, {})
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {run_label(o, b) for o, b in RUNS}
    for objective, beta in RUNS:
        line = lines[run_label(objective, beta)]
        np.testing.assert_array_equal(line.get_xdata(), BON_K)
        expected = [value_of(summary, objective, beta, "chat", "win_rate", k) for k in BON_K]
        np.testing.assert_allclose(line.get_ydata(), expected)
        assert line.get_color() == run_color(objective, beta)
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    assert len(bands(ax)) == len(RUNS) - 1  # the NaN-CI run has no band
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == "CE" and "GEM (β=0.7)" in legend
    # band of CE spans exactly the CI
    ce_band = bands(ax)[0].get_paths()[0].vertices
    lows = [value_of(summary, "ce", "na", "chat", "win_rate", k, "ci_low") for k in BON_K]
    highs = [value_of(summary, "ce", "na", "chat", "win_rate", k, "ci_high") for k in BON_K]
    assert ce_band[:, 1].min() == pytest.approx(min(lows)) and ce_band[:, 1].max() == pytest.approx(max(highs))


def test_fig7a_missing_win_rate_names_task_and_metric(summary):
    partial = summary[summary["metric"] != "win_rate"]
    with pytest.raises(ValueError, match="task 'chat', metric 'win_rate'"):
        draw_figure("fig7a_bon_scaling", FigureData(summary=partial), {})


def test_fig6_points_and_ci_in_both_directions(data, summary):
    fig = draw_figure("fig6_diversity_vs_winrate", data, {})
    ax = fig.axes[0]
    offsets = {c.get_label(): c.get_offsets()[0] for c in ax.collections if c.get_label() and not c.get_label().startswith("_")}
    assert set(offsets) == {run_label(o, b) for o, b in RUNS}  # base has no BoN win rate
    yerr, xerr = containers(ax, "_yerr "), containers(ax, "_xerr ")
    for objective, beta in RUNS:
        label = run_label(objective, beta)
        x = value_of(summary, objective, beta, "chat", "sbert_diversity")
        y = value_of(summary, objective, beta, "chat", "win_rate", 32)
        np.testing.assert_allclose(offsets[label], [x, y])
        if (objective, beta) == ("neft", "na"):
            assert label not in yerr and label not in xerr  # NaN CI: no bar
            continue
        ((pos, lo, hi),) = errorbar_extent(yerr[label], "y")
        assert pos == pytest.approx(x)
        assert (lo, hi) == pytest.approx((value_of(summary, objective, beta, "chat", "win_rate", 32, "ci_low"),
                                          value_of(summary, objective, beta, "chat", "win_rate", 32, "ci_high")))
        ((pos, lo, hi),) = errorbar_extent(xerr[label], "x")
        assert pos == pytest.approx(y)
        assert (lo, hi) == pytest.approx((value_of(summary, objective, beta, "chat", "sbert_diversity", None, "ci_low"),
                                          value_of(summary, objective, beta, "chat", "sbert_diversity", None, "ci_high")))
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(run_label(o, b) for o, b in RUNS)
    assert "SBERT" in ax.get_xlabel() and "%" in ax.get_ylabel()
    # another diversity metric moves the x values
    fig = draw_figure("fig6_diversity_vs_winrate", data, {"diversity_metric": "self_bleu_diversity"})
    offsets = {c.get_label(): c.get_offsets()[0] for c in fig.axes[0].collections if c.get_label() == "CE"}
    assert offsets["CE"][0] == pytest.approx(value_of(summary, "ce", "na", "chat", "self_bleu_diversity"))


def test_fig6_labels_do_not_overlap(data):
    fig = draw_figure("fig6_diversity_vs_winrate", data, {})
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)


def test_fig6_missing_diversity_metric(summary):
    with pytest.raises(ValueError, match="task 'chat', metric 'sbert_diversity'"):
        draw_figure("fig6_diversity_vs_winrate", FigureData(summary=summary[summary["metric"] != "sbert_diversity"]), {})


def test_fig7b_one_panel_per_code_task(data, summary):
    fig = draw_figure("fig7b_pass_at_k", data, {})
    axes = [ax for ax in fig.axes if ax.get_lines()]
    assert [ax.get_title() for ax in axes] == ["Code (synthetic world)", "HumanEval"]
    for ax, task in zip(axes, ("code", "humaneval")):
        line = next(ln for ln in ax.get_lines() if ln.get_label() == "GEM (β=0.7)")
        np.testing.assert_array_equal(line.get_xdata(), PASS_K)
        np.testing.assert_allclose(line.get_ydata(), [value_of(summary, "gem", "0.7", task, "pass_at_k", k)
                                                      for k in PASS_K])
        assert ax.get_xscale() == "log"
    only_code = summary[summary["task"] != "humaneval"]
    fig = draw_figure("fig7b_pass_at_k", FigureData(summary=only_code), {})
    assert [ax.get_title() for ax in fig.axes if ax.get_lines()] == ["Code (synthetic world)"]
    with pytest.raises(ValueError, match="task 'code' or 'humaneval', metric 'pass_at_k'"):
        draw_figure("fig7b_pass_at_k", FigureData(summary=summary[summary["metric"] != "pass_at_k"]), {})


def _bars(ax):
    out = {}
    for c in ax.containers:
        if isinstance(c, BarContainer):
            for patch in c.patches:
                out[c.get_label()] = (patch.get_x() + patch.get_width() / 2, patch.get_height())
    return out


def test_fig8_default_knowledge_bars_with_error_bars(data, summary):
    fig = draw_figure("fig8_knowledge", data, {})
    (ax,) = [a for a in fig.axes if a.get_visible()]
    bars = _bars(ax)
    assert list(bars) == [run_label(o, b) for o, b in [("base", "na")] + RUNS]
    errs = containers(ax, "_err ")
    for objective, beta in [("base", "na")] + RUNS:
        label = run_label(objective, beta)
        x, height = bars[label]
        assert height == pytest.approx(value_of(summary, objective, beta, "knowledge", "acc"))
        if (objective, beta) == ("neft", "na"):
            assert label not in errs
        else:
            ((pos, lo, hi),) = errorbar_extent(errs[label], "y")
            assert pos == pytest.approx(x)
            assert (lo, hi) == pytest.approx((value_of(summary, objective, beta, "knowledge", "acc", None, "ci_low"),
                                              value_of(summary, objective, beta, "knowledge", "acc", None, "ci_high")))
    # the pre-trained score is the dashed reference line
    ref = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert ref and ref[0].get_ydata()[0] == pytest.approx(value_of(summary, "base", "na", "knowledge", "acc"))
    assert [t.get_text() for t in fig.legends[0].get_texts()][0] == "Pre-trained"


def test_fig8_paper_tier_tasks_and_missing_task(data, summary):
    fig = draw_figure("fig8_knowledge", data, {"knowledge_tasks": LEADERBOARD})
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 7  # six tasks and their average
    assert axes[0].get_title() == "ARC-Challenge (acc_norm)"
    assert _bars(axes[5])["GEM (β=0.7)"][1] == pytest.approx(value_of(summary, "gem", "0.7", "gsm8k", "exact_match"))
    assert axes[6].get_title() == "Average over tasks"
    for objective, beta in [("base", "na"), ("ce", "na"), ("gem", "0.7")]:
        mean = np.mean([value_of(summary, objective, beta, t, m) for t, m in LEADERBOARD])
        assert _bars(axes[6])[run_label(objective, beta)][1] == pytest.approx(mean)
    assert not containers(axes[6], "_err ")  # no interval for the average
    fig = draw_figure("fig8_knowledge", data, {"knowledge_tasks": LEADERBOARD, "average": False})
    assert len([a for a in fig.axes if a.get_visible()]) == 6
    with pytest.raises(ValueError, match="task 'mmlu', metric 'acc_norm'"):
        draw_figure("fig8_knowledge", data, {"knowledge_tasks": [("arc_challenge", "acc_norm"), ("mmlu", "acc_norm")]})


def test_fig9_distance_bars_for_sft_runs_only(data, summary):
    fig = draw_figure("fig9_parameter_distance", data, {})
    ax = fig.axes[0]
    bars = _bars(ax)
    assert list(bars) == [run_label(o, b) for o, b in RUNS]
    for objective, beta in RUNS:
        assert bars[run_label(objective, beta)][1] == pytest.approx(
            value_of(summary, objective, beta, "parameters", "l2_distance_from_base"))
    assert [t.get_text() for t in ax.get_xticklabels()] == [run_label(o, b) for o, b in RUNS]
    with pytest.raises(ValueError, match="task 'parameters', metric 'l2_distance_from_base'"):
        draw_figure("fig9_parameter_distance", FigureData(summary=summary[summary["task"] != "parameters"]), {})


def test_fig11_next_token_panels(data):
    fig = draw_figure("fig11_next_token", data, {})
    axes = fig.axes
    assert [ax.get_title().split(",")[0] for ax in axes] == ["CE", "CE + Entropy", "GEM (β=0.7)"]
    ticks = [t.get_text() for t in axes[-1].get_xticklabels()]
    assert ticks[:10] == ["7", "0", "1", "2", "3", "4", "5", "6", "8", "9"]  # world answers first
    assert "␣the" in ticks and "⏎" in ticks
    stats = next_token_stats()
    for ax, entry in zip(axes, stats[:3]):
        assert ax.get_yscale() == "log"
        (threshold,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
        assert threshold.get_ydata()[0] == pytest.approx(1e-4)
        assert threshold.get_color() == "red"
        model_bars = next(c for c in ax.containers if c.get_label() == ax.get_title().split(",")[0])
        heights = {ticks[round(p.get_x() + p.get_width() / 2 + 0.2)]: p.get_height() for p in model_bars.patches}
        nt = entry["next_token"]
        expected = {tok.strip() if tok.strip().isdigit() else tok: p for tok, p in zip(nt["tokens"], nt["probs"])}
        expected = {k.replace(" ", "␣").replace("\n", "⏎"): v for k, v in expected.items()}
        assert heights == pytest.approx(expected)
        world = next(c for c in ax.containers if c.get_label() == "World (true distribution)")
        assert world.patches[0].get_height() == pytest.approx(0.3)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["CE", "CE + Entropy", "GEM (β=0.7)", "World (true distribution)", "10⁻⁴ threshold"]
    # CE's lowest seed is drawn, not the seed-9999 copy
    assert "seed 1234" in axes[0].get_title()
    # extra objectives on request
    fig = draw_figure("fig11_next_token", data, {"next_token_objectives": ["ce_wd"]})
    assert [ax.get_title().split(",")[0] for ax in fig.axes] == ["CE", "CE + WD", "CE + Entropy", "GEM (β=0.7)"]


def test_fig11_without_world_and_without_next_token():
    fig = draw_figure("fig11_next_token", FigureData(summary=synthetic_summary(), model_stats=next_token_stats(world=False)), {})
    assert all(not any(c.get_label() == "World (true distribution)" for c in ax.containers) for ax in fig.axes)
    with pytest.raises(ValueError, match="next_token"):
        draw_figure("fig11_next_token", FigureData(summary=synthetic_summary(), model_stats=[{"run": {"objective": "ce"}}]), {})


def test_fig12_gem_minus_ce_per_model():
    summary = synthetic_summary(models=("qwen-3b", "gemma-9b"))
    fig = draw_figure("fig12_model_gains", FigureData(summary=summary), {})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["gemma-9b", "qwen-3b"]
    (bars,) = [c for c in ax.containers if c.get_label() == "Best-of-32 win rate"]
    for patch, model in zip(bars.patches, ("gemma-9b", "qwen-3b")):
        sel = summary[(summary["model"] == model) & (summary["metric"] == "win_rate") & (summary["k"] == 32)]
        gem = float(sel[(sel["objective"] == "gem") & (sel["beta"] == "0.7")]["value"].iloc[0])
        ce = float(sel[sel["objective"] == "ce"]["value"].iloc[0])
        assert patch.get_height() == pytest.approx(gem - ce)
    (pass100,) = [c for c in ax.containers if c.get_label() == "pass@100 (code)"]
    sel = summary[(summary["model"] == "gemma-9b") & (summary["task"] == "humaneval") & (summary["k"] == 100)]
    expected = float(sel[(sel["objective"] == "gem") & (sel["beta"] == "0.7")]["value"].iloc[0]) - \
        float(sel[sel["objective"] == "ce"]["value"].iloc[0])
    assert pass100.patches[0].get_height() == pytest.approx(expected)
    with pytest.raises(ValueError, match="figure 12 needs more than one model"):
        draw_figure("fig12_model_gains", FigureData(summary=synthetic_summary()), {})


def test_figures_follow_options_model_with_several_models():
    summary = synthetic_summary(models=("a", "b"))
    fig = draw_figure("fig7a_bon_scaling", FigureData(summary=summary), {"model": "b"})
    ce = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == "CE")
    sel = summary[(summary["model"] == "b") & (summary["objective"] == "ce") & (summary["metric"] == "win_rate")]
    np.testing.assert_allclose(ce.get_ydata(), sel.sort_values("k")["value"])
    with pytest.raises(ValueError, match="model 'c'"):
        draw_figure("fig7a_bon_scaling", FigureData(summary=summary), {"model": "c"})


# --------------------------------------------------------------------------- Figures 2-4, Proposition 2


@pytest.fixture(scope="module")
def transfer():
    return {(m, b): pt.transfer_steps(m, b, steps=300, lr=0.1) for m, b in pt.METHODS}


def test_ce_transfers_all_mass_to_the_target(transfer):
    f = transfer[("ce", None)]
    init = np.asarray(pt.INITIAL_PROBS)
    np.testing.assert_allclose(f[0], init)
    assert f[-1, pt.TARGET] > 0.95  # collapse onto the label (Limitation 2: unbounded transfer)
    others = np.delete(np.arange(init.size), pt.TARGET)
    assert np.all(f[-1, others] < init[others])  # every source token loses (Limitation 1: all-to-one)
    assert np.all(np.diff(f[:, pt.TARGET]) > 0)  # and it never stops


def test_gem_beta0_sparse_update_and_termination(transfer):
    ce, gem0 = transfer[("ce", None)], transfer[("gem", 0.0)]
    init = np.asarray(pt.INITIAL_PROBS)
    final = gem0[-1]
    # termination: the label is the (joint) most likely token, then nothing moves any more
    assert final[pt.TARGET] >= final.max() - 1e-9
    np.testing.assert_allclose(gem0[50], final, atol=1e-12)
    # sparse update: tokens that never were the most likely keep their logit differences exactly
    # (their ratios, hence relative order and conditional distribution, are unchanged); CE's change
    tail = [3, 4, 5, 6, 7, 8, 9]
    log_ratio_change = lambda f: np.abs(np.diff(np.log(f[tail])) - np.diff(np.log(init[tail]))).max()  # noqa: E731
    assert log_ratio_change(final) < 1e-9
    assert log_ratio_change(ce[-1]) > 1e-2
    # and they keep their mass: every non-target token has more probability than after CE
    others = np.delete(np.arange(init.size), pt.TARGET)
    assert np.all(final[others] > ce[-1, others])
    assert final[tail].sum() > 0.9 * init[tail].sum() and ce[-1, tail].sum() < 0.1 * init[tail].sum()
    entropy = lambda f: -(f * np.log(f)).sum()  # noqa: E731
    assert entropy(final) > entropy(transfer[("gem", 0.7)][-1]) > entropy(ce[-1])
    assert np.argsort(-final[tail]).tolist() == np.argsort(-init[tail]).tolist()


def test_gem_beta1_equals_ce_steps():
    np.testing.assert_allclose(pt.transfer_steps("gem", 1.0, steps=20), pt.transfer_steps("ce", steps=20), atol=1e-12)


def test_proposition2_converges_to_softmax_beta_log_p():
    distances = pt.proposition2_distances(betas=(0.5, 0.7, 1.0), steps=300)
    for beta, d in distances.items():
        assert d[0] > 0.1 and d[-1] < 1e-3, beta
    p = np.asarray(pt.DATA_COUNTS) / sum(pt.DATA_COUNTS)
    np.testing.assert_allclose(pt.fixed_point(p, 0.7), p ** 0.7 / (p ** 0.7).sum())
    # beta < 1 does not converge to the data distribution itself
    to_data = pt.proposition2_distances(betas=(0.7,), steps=300, reference="data")[0.7]
    assert to_data[-1] > 0.05
    with pytest.raises(ValueError, match="p > 0"):
        pt.proposition2_distances(counts=(3, 0, 2))


def test_probability_transfer_figure():
    fig = draw_figure("probability_transfer", FigureData(summary=None), {})  # needs no results
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:4] == ["Initial ('pre-trained')", "After CE, 300 steps", "After GEM (β=0), 300 steps",
                          "After GEM (β=0.7), 300 steps"]
    heights = [p.get_height() for p in fig.axes[1].containers[0].patches]
    np.testing.assert_allclose(heights, pt.transfer_steps("ce", steps=300, lr=0.1)[-1])
    prop = fig.axes[-1]
    assert prop.get_yscale() == "log"
    assert any("softmax(0.7·log p)" in ln.get_label() for ln in prop.get_lines())
