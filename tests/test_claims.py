"""The paper's claims judged by a paired bootstrap (gemsft.report.paired, verdicts, bounds, claims):
the bootstrap against scipy.stats.bootstrap and float64 arithmetic, the four verdicts on constructed
stages, claims.csv and the tables and figure drawn from it, and the rule in the planned DAG."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats as scipy_stats  # noqa: E402

from gemsft.evaluate.stage import mean_rows, metric  # noqa: E402
from gemsft.report import claims, tables  # noqa: E402
from gemsft.report.bounds import AT_BOUND_MARGIN, CEILING, FLOOR, NATS, POINTS, difference_unit, shared_bound  # noqa: E402
from gemsft.report.figures import FigureData, draw_figure  # noqa: E402
from gemsft.report.paired import Items, pair_seeds, paired_bootstrap, paired_stratum  # noqa: E402
from gemsft.report.verdicts import judge_claims, verdict, write_claims  # noqa: E402

from conftest import copy_project, planned_jobs, run_snakemake  # noqa: E402

VERDICTS = {"supported", "contradicted", "inconclusive", "untestable"}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def items(values, weights=None, link=None, ids=None) -> Items:
    ids = ids or [f"p{i}" for i in range(len(values))]
    weights = [1.0] * len(values) if weights is None else weights
    return Items(dict(zip(ids, map(float, values))), dict(zip(ids, map(float, weights))), link)


# --------------------------------------------------------------------------- the paired bootstrap


def test_one_seed_matches_scipys_paired_percentile_bootstrap():
    rng = np.random.default_rng(1)
    difficulty = rng.uniform(0, 100, size=60)  # shared by both arms: pairing removes it
    a, b = difficulty + rng.normal(3.0, 4.0, 60), difficulty + rng.normal(0.0, 4.0, 60)
    pair = [paired_stratum(items(a), items(b))]
    est = paired_bootstrap([pair], n_resamples=20000, rng=np.random.default_rng(2))
    ref = scipy_stats.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis), paired=True,
                                vectorized=True, n_resamples=20000, method="percentile",
                                rng=np.random.default_rng(3)).confidence_interval
    assert est.difference == pytest.approx(math.fsum(a) / 60 - math.fsum(b) / 60, rel=1e-12)
    assert (est.value_a, est.value_b) == (pytest.approx(a.mean(), rel=1e-12), pytest.approx(b.mean(), rel=1e-12))
    width = ref.high - ref.low
    assert est.ci_low == pytest.approx(ref.low, abs=0.05 * width)
    assert est.ci_high == pytest.approx(ref.high, abs=0.05 * width)
    # Unpaired, the shared difficulty would make the interval far wider than the paired one.
    assert width < 0.25 * (np.std(a) + np.std(b))
    assert (est.n_items, est.n_seeds) == (60, 1)


def test_weighted_exp_link_matches_scipys_paired_bootstrap():
    rng = np.random.default_rng(4)
    nll_a, nll_b = rng.normal(1.0, 0.3, 40), rng.normal(1.2, 0.3, 40)
    tokens = rng.integers(1, 30, size=40).astype(float)
    pair = [paired_stratum(items(nll_a, tokens, "exp"), items(nll_b, tokens, "exp"))]
    est = paired_bootstrap([pair], n_resamples=10000, rng=np.random.default_rng(5))

    def perplexity_gap(a, b, w, axis=-1):
        return np.exp((a * w).sum(axis) / w.sum(axis)) - np.exp((b * w).sum(axis) / w.sum(axis))

    exact = math.exp(math.fsum(nll_a * tokens) / math.fsum(tokens)) - math.exp(math.fsum(nll_b * tokens) / math.fsum(tokens))
    assert est.difference == pytest.approx(exact, rel=1e-12)
    ref = scipy_stats.bootstrap((nll_a, nll_b, tokens), perplexity_gap, paired=True, vectorized=True,
                                n_resamples=10000, method="percentile", rng=np.random.default_rng(6)).confidence_interval
    width = ref.high - ref.low
    assert est.ci_low == pytest.approx(ref.low, abs=0.06 * width)
    assert est.ci_high == pytest.approx(ref.high, abs=0.06 * width)


def test_items_are_resampled_with_the_same_indices_for_both_arms():
    """A is B plus 3 on every item: every paired replicate is exactly 3, however spread the items."""
    b = np.random.default_rng(7).uniform(0, 100, 50)
    est = paired_bootstrap([[paired_stratum(items(b + 3.0), items(b))]], n_resamples=500)
    assert est.difference == pytest.approx(3.0) and est.ci_low == pytest.approx(3.0) and est.ci_high == pytest.approx(3.0)


def test_several_seeds_point_estimate_against_float64_and_exact_interval():
    rng = np.random.default_rng(8)
    a = {seed: {f"q{i}": float(rng.uniform(0, 100)) for i in range(seed, seed + 20)} for seed in (1, 2, 3)}
    b = {seed: {f"q{i}": float(rng.uniform(0, 100)) for i in range(0, 18 + 2 * seed)} for seed in (1, 2, 3)}
    pairs = [[paired_stratum(Items(x, dict.fromkeys(x, 1.0)), Items(y, dict.fromkeys(y, 1.0)))]
             for x, y in pair_seeds(a, b)]
    est = paired_bootstrap(pairs, n_resamples=200)
    expected = []
    for seed in (1, 2, 3):  # by hand: the items both seeds answered, float64 sums
        shared = sorted(set(a[seed]) & set(b[seed]))
        expected.append(math.fsum(a[seed][p] for p in shared) / len(shared)
                        - math.fsum(b[seed][p] for p in shared) / len(shared))
    assert est.difference == pytest.approx(math.fsum(expected) / 3, rel=1e-12)
    assert [len(set(a[s]) & set(b[s])) for s in (1, 2, 3)] == [19, 20, 20]
    assert est.n_seeds == 3 and est.n_items == 19  # the mean over seed pairs, rounded down
    # No spread within a seed pair, 0 and 10 between pairs: replicates 0, 5, 10 with probabilities
    # 1/4, 1/2, 1/4, so the 95% interval is [0, 10] around 5.
    flat = [[paired_stratum(items([d] * 5), items([0.0] * 5))] for d in (0.0, 10.0)]
    est = paired_bootstrap(flat, n_resamples=4000, rng=np.random.default_rng(0))
    assert (est.difference, est.ci_low, est.ci_high, est.n_seeds) == (5.0, 0.0, 10.0, 2)


def test_seed_pairing_and_bad_input():
    assert pair_seeds({0: "base"}, {1: "a", 2: "b"}) == [("base", "a"), ("base", "b")]
    assert pair_seeds({1: "a", 2: "b"}, {0: "base"}) == [("a", "base"), ("b", "base")]
    assert pair_seeds({1: "a", 2: "b", 3: "c"}, {3: "x", 2: "y"}) == [("b", "y"), ("c", "x")]
    assert pair_seeds({1: "a", 2: "b"}, {3: "x", 4: "y"}) == []
    assert len(paired_stratum(items([1.0, math.nan, 3.0]), items([1.0, 2.0, 3.0]))) == 2  # NaN items drop out
    with pytest.raises(ValueError, match="different links"):
        paired_stratum(items([1.0], link="exp"), items([1.0]))
    with pytest.raises(ValueError, match="at least one seed pair"):
        paired_bootstrap([])
    with pytest.raises(ValueError, match="shared items"):
        paired_bootstrap([[paired_stratum(items([1.0], ids=["a"]), items([1.0], ids=["b"]))]])
    with pytest.raises(ValueError, match="confidence level"):
        paired_bootstrap([[paired_stratum(items([1.0]), items([2.0]))]], level=95)


def test_verdict_words_and_bounds():
    assert [verdict(">", 0.1, 2.0), verdict(">", -2.0, -0.1), verdict(">", -1.0, 1.0)] == \
        ["supported", "contradicted", "inconclusive"]
    assert [verdict("<", -2.0, -0.1), verdict("<", 0.1, 2.0), verdict("<", 0.0, 1.0)] == \
        ["supported", "contradicted", "inconclusive"]
    with pytest.raises(ValueError, match="direction"):
        verdict(">=", 1.0, 2.0)
    margin = 100 * AT_BOUND_MARGIN
    assert shared_bound("pass_at_k", 0.0, margin) == FLOOR and shared_bound("win_rate", 100.0, 100.0 - margin) == CEILING
    assert shared_bound("pass_at_k", 0.0, margin + 0.01) is None  # one side off the floor: testable
    assert shared_bound("pass_rate", 0.0, 100.0) is None
    assert shared_bound("entropy", 0.0, AT_BOUND_MARGIN) == FLOOR and shared_bound("entropy", 1e6, 1e6) is None
    assert shared_bound("kl_to_world", 0.0, 0.0) is None  # no known bounds
    assert (difference_unit("entropy"), difference_unit("sbert_diversity"), difference_unit("alignment_tax_acc")) == \
        (NATS, POINTS, POINTS)


# --------------------------------------------------------------------------- verdicts from stages


def stage(name, objective, beta, seed, per_prompt, model="tiny"):
    return {"stage": name, "run": {"model": model, "objective": objective, "beta": beta, "seed": seed},
            "rows": mean_rows(per_prompt), "per_prompt": per_prompt}


def world_stages(gem="gem_log_sigmoid", oracle=True, base=True):
    """Two seeds of GEM and CE and the base model (seed 0), built so that each verdict is known:
    entropy and the alignment tax supported, N-gram diversity contradicted, Self-BLEU inconclusive,
    pass@100 untestable at the floor, pass@16 at the ceiling, BoN@32 decided by its oracle."""
    rng = np.random.default_rng(0)
    stages = []
    docs = [100.0 * (i % 4 != 0) for i in range(40)]  # the base model's knowledge probes
    for objective, beta in ((gem, "0.7"), ("ce", "na")):
        g = objective.startswith("gem")
        for seed in (1, 2):
            stages.append(stage("model_stats", objective, beta, seed, [
                metric("sft_test", "entropy", (0.8 if g else 0.4) + rng.normal(0, 0.05), prompt_id=f"c{i}",
                       weight=float(10 + i)) for i in range(30)]))
            win = [metric("chat", "win_rate", 50.0 + rng.normal(0, 5), 32, prompt_id=f"q{i}") for i in range(20)]
            if oracle:
                win += [metric("chat", "oracle_win_rate", (70.0 if g else 40.0) + rng.normal(0, 5), 32, prompt_id=f"q{i}")
                        for i in range(20)]
            stages.append(stage("chat_quality", objective, beta, seed, win))
            stages.append(stage("diversity", objective, beta, seed, [
                *[metric("chat", "ngram_diversity", (20.0 if g else 30.0) + i, prompt_id=f"q{i}") for i in range(20)],
                # the same items, +-5 points alternately: a mean difference of exactly 0
                *[metric("chat", "self_bleu_diversity", 60.0 + i + (5.0 if i % 2 else -5.0) * g, prompt_id=f"q{i}")
                  for i in range(20)],
                *[metric("chat", "sbert_diversity", 15.0 + (i % 3), prompt_id=f"q{i}") for i in range(20)]]))
            stages.append(stage("code", objective, beta, seed, [
                metric("code", "pass_at_k", 0.0, 100, prompt_id=f"code/{i}") for i in range(8)]))
            stages.append(stage("math", objective, beta, seed, [
                *[metric("math", "pass_rate", 100.0, 16, prompt_id=f"m{i}") for i in range(12)],
                *[metric("math", "greedy_accuracy", 100.0 * (i % 2), prompt_id=f"m{i}") for i in range(12)]]))
            # CE forgets one probe in four that the base model knew; GEM forgets none.
            tuned = [d if g or i % 8 != 1 else 0.0 for i, d in enumerate(docs)]
            stages.append(stage("knowledge", objective, beta, seed, [
                metric("knowledge", "acc", v, prompt_id=f"d{i}") for i, v in enumerate(tuned)]))
    if base:
        stages.append(stage("knowledge", "base", "na", 0, [metric("knowledge", "acc", v, prompt_id=f"d{i}")
                                                           for i, v in enumerate(docs)]))
        stages.append(stage("diversity", "base", "na", 0, [
            metric("chat", "ngram_diversity", 40.0 + i, prompt_id=f"q{i}") for i in range(20)]))
    return stages


def by_id(rows):
    return {r["id"]: r for r in rows}


def test_the_four_verdicts_on_constructed_stages():
    rows = by_id(judge_claims(world_stages(), "world", n_resamples=400))
    assert list(rows) == list(claims.CLAIM_IDS) and {r["verdict"] for r in rows.values()} == VERDICTS
    assert rows["entropy"]["verdict"] == "supported" and rows["entropy"]["ci_low"] > 0
    assert rows["bon32_win_rate"]["verdict"] == "supported"
    assert (rows["bon32_win_rate"]["task"], rows["bon32_win_rate"]["metric"]) == ("chat", "oracle_win_rate")
    ngram = rows["diversity_ngram"]
    assert ngram["verdict"] == "contradicted"
    assert [ngram[c] for c in ("difference", "ci_low", "ci_high")] == pytest.approx([-10.0] * 3)
    bleu = rows["diversity_self_bleu"]
    assert bleu["verdict"] == "inconclusive" and bleu["ci_low"] < 0 < bleu["ci_high"]
    assert bleu["difference"] == pytest.approx(0.0, abs=1e-12)
    floor = rows["pass_at_100"]
    assert (floor["verdict"], floor["reason"], floor["task"]) == ("untestable", "both at floor (0.0 and 0.0)", "code")
    ceiling = rows["math_pass"]
    assert (ceiling["verdict"], ceiling["reason"]) == ("untestable", "both at ceiling (100.0 and 100.0)")
    assert rows["math_greedy"]["verdict"] == "inconclusive"  # equal on every item, not at a bound
    assert rows["math_majority"]["reason"] == "missing math majority@16 for GEM (log-sigmoid, β=0.7)"
    # CE against the pre-trained model (one seed, paired with both of CE's): CE less diverse.
    base = rows["ce_vs_base_ngram"]
    assert (base["verdict"], base["arm_a"], base["arm_b"], base["n_seeds"]) == ("supported", "CE", "Pre-trained", 2)
    assert base["difference"] == pytest.approx(-10.0)
    assert rows["ce_vs_base_sbert"]["reason"] == "missing chat Sentence-BERT diversity for Pre-trained"
    for r in rows.values():
        assert r["verdict"] != "untestable" or r["reason"], r["id"]
        assert r["direction"] in "<>" and r["model"] == "tiny"


def test_alignment_tax_is_paired_per_document_against_the_base_model():
    rows = by_id(judge_claims(world_stages(), "world", n_resamples=400))
    tax = rows["alignment_tax"]
    # tax_GEM - tax_CE = acc_CE - acc_GEM: CE lost 5 of 40 probes (12.5 points), GEM none.
    assert (tax["task"], tax["metric"], tax["direction"]) == ("knowledge", "alignment_tax_acc", "<")
    assert (tax["value_a"], tax["value_b"]) == (0.0, pytest.approx(12.5))
    assert tax["difference"] == pytest.approx(-12.5) and tax["ci_high"] < 0 and tax["verdict"] == "supported"
    assert (tax["n_items"], tax["n_seeds"]) == (40, 2)
    without_base = by_id(judge_claims(world_stages(base=False), "world", n_resamples=50))["alignment_tax"]
    assert without_base["verdict"] == "untestable" and without_base["reason"].startswith("no run of Pre-trained")


def test_sources_name_their_tasks_and_gem_falls_back_to_the_linear_gem():
    rows = by_id(judge_claims(world_stages(gem="gem", oracle=False), "world", n_resamples=50))
    bon = rows["bon32_win_rate"]
    assert bon["verdict"] == "untestable" and bon["reason"].startswith("missing chat oracle win rate, BoN@32")
    assert "GEM (log-sigmoid, β=0.7) not run" in bon["reason"]
    entropy = rows["entropy"]
    assert entropy["verdict"] == "supported" and entropy["arm_a"] == "GEM (β=0.7)"
    assert entropy["reason"] == "GEM (β=0.7) stands in for GEM (log-sigmoid, β=0.7)"
    # Real data: the paper's own benchmarks, which these stages lack.
    real = by_id(judge_claims(world_stages(), "real", n_resamples=50))
    assert (real["pass_at_100"]["task"], real["bon32_win_rate"]["metric"]) == ("humaneval", "win_rate")
    assert real["pass_at_100"]["reason"] == "missing HumanEval pass@100 for GEM (log-sigmoid, β=0.7)"
    assert real["bon32_win_rate"]["verdict"] == "inconclusive"  # the reward model's win rates are noise here
    only_gem = [s for s in world_stages() if s["run"]["objective"] != "ce"]
    assert by_id(judge_claims(only_gem, "world", n_resamples=50))["entropy"]["reason"] == "no run of CE"
    with pytest.raises(ValueError, match="data.source"):
        judge_claims(world_stages(), "imaginary")
    with pytest.raises(ValueError, match="no evaluation stage"):
        judge_claims([], "world")


def test_alignment_tax_over_several_leaderboard_tasks_averages_the_paired_task_differences():
    def scores(arc, mmlu):
        return [*[metric("arc_challenge", "acc_norm", v, prompt_id=f"arc/{i}") for i, v in enumerate(arc)],
                *[metric("mmlu", "acc", v, prompt_id=f"mmlu/{i}") for i, v in enumerate(mmlu)]]

    stages = [stage("knowledge", "base", "na", 0, scores([100.0] * 40, [100.0] * 20)),
              stage("knowledge", "ce", "na", 1, scores([0.0] * 8 + [100.0] * 32, [0.0] * 5 + [100.0] * 15)),
              stage("knowledge", "gem_log_sigmoid", "0.7", 1, scores([100.0] * 40, [100.0] * 20))]
    leaderboard = [["arc_challenge", "acc_norm"], ["mmlu", "acc"]]
    tax = by_id(judge_claims(stages, "real", leaderboard, n_resamples=200))["alignment_tax"]
    assert (tax["task"], tax["metric"]) == ("arc_challenge+mmlu", "alignment_tax_average")
    assert tax["value_b"] == pytest.approx((20.0 + 25.0) / 2) and tax["difference"] == pytest.approx(-22.5)
    assert tax["n_items"] == 60 and tax["verdict"] == "supported"


def test_intervals_do_not_depend_on_other_models():
    one = by_id(judge_claims(world_stages(), "world", n_resamples=100))
    other = [{**s, "run": {**s["run"], "model": "other"}} for s in world_stages()]
    both = [r for r in judge_claims(world_stages() + other, "world", n_resamples=100) if r["model"] == "tiny"]
    assert by_id(both)["entropy"]["ci_low"] == one["entropy"]["ci_low"]


# --------------------------------------------------------------------------- claims.csv, tables, figure


@pytest.fixture(scope="module")
def claims_csv(tmp_path_factory):
    from gemsft import files

    out = tmp_path_factory.mktemp("claims")
    paths = []
    for i, s in enumerate(world_stages()):
        paths.append(str(out / f"{i}.json"))
        files.write_json(paths[-1], s)
    write_claims(paths, str(out / "claims.csv"), "world", n_resamples=300)
    return out / "claims.csv"


def test_claims_csv_schema_and_reader(claims_csv, tmp_path):
    raw = pd.read_csv(claims_csv, dtype=str, keep_default_na=False)
    assert tuple(raw.columns) == claims.CLAIMS_COLUMNS
    assert raw["id"].tolist() == list(claims.CLAIM_IDS) and set(raw["verdict"]) == VERDICTS
    missing = raw[raw["id"] == "math_majority"].iloc[0]
    assert (missing["value_a"], missing["n_items"], missing["k"]) == ("", "", "16")
    loaded = claims.load_claims(claims_csv)
    assert loaded["n_seeds"].dtype == float and loaded.set_index("id").loc["entropy", "n_seeds"] == 2
    bad = tmp_path / "bad.csv"
    raw.assign(verdict=raw["verdict"].replace("inconclusive", "maybe")).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"bad\.csv row 5 \(diversity_self_bleu\): verdict 'maybe' is not one of"):
        claims.load_claims(bad)
    raw.drop(columns=["reason"]).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"bad\.csv lacks column\(s\) reason"):
        claims.load_claims(bad)


def test_scoreboard_table(claims_csv):
    df = tables.build_table("claims", None, None, claims.load_claims(claims_csv))
    assert list(df.columns) == claims.SCOREBOARD_COLUMNS and len(df) == 13
    row = df.set_index("claim").loc["GEM is more diverse than CE (N-gram diversity)"]
    assert row["tested on"] == "chat N-gram diversity: GEM (log-sigmoid, β=0.7) − CE"
    assert (row["difference A − B (95% CI)"], row["verdict"]) == ("-10.0 [-10.0, -10.0]", "contradicted")
    entropy = df.set_index("claim").loc["GEM has higher entropy than CE"]
    assert entropy["difference A − B (95% CI)"].startswith("+0.") and entropy["verdict"] == "supported"
    assert df.set_index("claim").loc["GEM beats CE in majority voting", "difference A − B (95% CI)"] == "—"
    with pytest.raises(ValueError, match="claims.csv"):
        tables.build_table("claims", None, None, None)


def test_comparison_shows_the_verdicts_of_claims_csv(claims_csv):
    loaded = claims.load_claims(claims_csv)
    summary = pd.DataFrame([
        {"model": "tiny", "objective": o, "beta": b, "task": "sft_test", "metric": "entropy", "k": None,
         "value": v, "ci_low": v - 0.01, "ci_high": v + 0.01} for o, b, v in (("ce", "na", 0.4), ("gem_log_sigmoid", "0.7", 0.8))])
    df = claims.paper_vs_reproduction(summary, claims.load_paper(), loaded)
    assert list(df.columns) == claims.COMPARISON_COLUMNS
    assert "holds" not in df.columns and "CIs overlap" not in df.columns
    entropy = df[df.what == "GEM (log-sigmoid, β=0.7): SFT test set entropy"].iloc[0]
    assert entropy["verdict"] == "supported"
    assert entropy["claim difference (95% CI)"].startswith("GEM (log-sigmoid, β=0.7) − CE: +0.")
    # The claim is GEM's at the paper's beta: the beta sweep's other rows carry none.
    sweep = df[df.what == "GEM (log-sigmoid, β=0.8): chat win rate, BoN@32"].iloc[0]
    assert (sweep["claim"], sweep["verdict"]) == ("", "")
    tax = df[df.what == "GEM (log-sigmoid, β=0.7): knowledge alignment tax (average)"].iloc[0]
    # Judged on another metric than the paper's number (one task's tax, not the six tasks' average): named.
    assert tax["verdict"] == "supported"
    assert tax["claim difference (95% CI)"].startswith("knowledge alignment tax (acc), GEM (log-sigmoid, β=0.7) − CE: -12.5 [")
    code = df[df.what == "GEM (log-sigmoid, β=0.7): HumanEval pass@100"].iloc[0]
    assert (code["verdict"], code["claim difference (95% CI)"]) == (
        "untestable", "code pass@100, GEM (log-sigmoid, β=0.7) − CE: +0.0 [+0.0, +0.0]")
    without = claims.paper_vs_reproduction(summary, claims.load_paper())
    assert without[without.what == entropy.what].iloc[0]["verdict"] == "—"


def test_forest_figure_orients_each_claim_and_separates_units(claims_csv):
    loaded = claims.load_claims(claims_csv)
    fig = draw_figure("claims_forest", FigureData(summary=None, claims=loaded), {})
    points, nats = fig.axes
    assert "percentage points" in points.get_xlabel() and "nats" in nats.get_xlabel()
    assert "paper" in points.get_xlabel()
    assert len(nats.get_yticks()) == 1 and len(points.get_yticks()) == 12
    texts = {t.get_text(): t for t in points.texts}
    assert {"supported", "contradicted", "inconclusive", "untestable"} <= set(texts)
    assert matplotlib.colors.to_hex(texts["supported"].get_color()) != matplotlib.colors.to_hex(texts["untestable"].get_color())
    # The alignment tax claim is "<": drawn as CE - GEM = +12.5, to the right.
    xs = sorted(round(float(line.get_xdata()[0]), 6) for line in points.lines if line.get_marker() == "o")
    assert 12.5 in xs and -10.0 in xs  # and N-gram diversity, contradicted, to the left
    assert points.get_xlim()[0] < 0 < points.get_xlim()[1]
    top = max(points.get_yticks())  # the claims from the top in CLAIMS order
    labels = dict(zip(points.get_yticks(), (t.get_text() for t in points.get_yticklabels())))
    assert labels[top].startswith("GEM has a higher BoN@32 win rate than CE")
    with pytest.raises(ValueError, match="claims.csv"):
        draw_figure("claims_forest", FigureData(summary=None), {})


# --------------------------------------------------------------------------- the rule


def test_claims_rule_table_and_figure_are_planned(tmp_path):
    project = copy_project(tmp_path)
    result = run_snakemake(project, "-n", "--cores", "1", "results/claims.csv", "results/tables/claims.csv",
                           "results/tables/paper_vs_reproduction.csv", "figures/claims_forest.png")
    counts = planned_jobs(result)
    assert counts["claims"] == 1 and counts["table"] == 2 and counts["figure"] == 1
    assert "summary" in counts  # the comparison; the scoreboard and the figure read only claims.csv
