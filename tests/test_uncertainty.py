"""Bootstrap intervals (gemsft.report.summary) against scipy.stats.bootstrap and exact small cases."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from gemsft import files
from gemsft.evaluate.stage import mean_rows, metric
from gemsft.report.metrics_table import metrics_records
from gemsft.report.summary import SUMMARY_COLUMNS, SeedValues, bootstrap, summarize, write_summary


def seed_values(values, weights=None, link=None):
    values = np.asarray(values, dtype=float)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=float)
    value = float(np.sum(values * weights) / np.sum(weights))
    return SeedValues(math.exp(value) if link == "exp" else value, values, weights, link)


def test_one_seed_matches_scipys_percentile_bootstrap():
    values = np.random.default_rng(1).beta(0.5, 2.0, size=80) * 100.0  # skewed, continuous
    est = bootstrap([seed_values(values)], n_resamples=20000, rng=np.random.default_rng(2))
    ref = scipy_stats.bootstrap((values,), np.mean, n_resamples=20000, method="percentile",
                                rng=np.random.default_rng(3)).confidence_interval
    assert est.value == pytest.approx(values.mean(), rel=1e-12)
    width = ref.high - ref.low
    assert est.ci_low == pytest.approx(ref.low, abs=0.05 * width)
    assert est.ci_high == pytest.approx(ref.high, abs=0.05 * width)
    assert est.n_prompts == 80 and est.n_seeds == 1


def test_weighted_mean_with_exp_link_matches_scipy_paired_bootstrap():
    rng = np.random.default_rng(4)
    nll, tokens = rng.normal(1.0, 0.4, size=30), rng.integers(1, 20, size=30).astype(float)
    est = bootstrap([seed_values(nll, tokens, "exp")], n_resamples=8000, rng=np.random.default_rng(5))
    assert est.value == pytest.approx(math.exp(np.sum(nll * tokens) / np.sum(tokens)), rel=1e-12)

    def perplexity(v, w, axis=-1):
        return np.exp(np.sum(v * w, axis=axis) / np.sum(w, axis=axis))

    ref = scipy_stats.bootstrap((nll, tokens), perplexity, paired=True, vectorized=True, n_resamples=8000,
                                method="percentile", rng=np.random.default_rng(6)).confidence_interval
    width = ref.high - ref.low
    assert est.ci_low == pytest.approx(ref.low, abs=0.06 * width)
    assert est.ci_high == pytest.approx(ref.high, abs=0.06 * width)


def test_seeds_are_resampled_exact_case():
    """No spread within seeds, 0 and 10 between them: the replicates are 0, 5, 10 with
    probabilities 1/4, 1/2, 1/4, so the 95% interval is [0, 10] and the value 5."""
    seeds = [seed_values([0.0] * 5), seed_values([10.0] * 5)]
    est = bootstrap(seeds, n_resamples=4000, rng=np.random.default_rng(0))
    assert (est.value, est.ci_low, est.ci_high, est.n_seeds) == (5.0, 0.0, 10.0, 2)


def test_without_per_prompt_values_only_seeds_give_an_interval():
    one = bootstrap([SeedValues(3.0)])
    assert one.value == 3.0 and math.isnan(one.ci_low) and math.isnan(one.ci_high)
    three = bootstrap([SeedValues(1.0), SeedValues(2.0), SeedValues(6.0)], n_resamples=4000)
    assert three.value == 3.0 and three.ci_low == 1.0 and three.ci_high == 6.0
    with pytest.raises(ValueError, match="at least one seed"):
        bootstrap([])
    with pytest.raises(ValueError, match="confidence level"):
        bootstrap([SeedValues(1.0)], level=1.5)


def stage(objective, seed, per_prompt, beta="na"):
    name = "knowledge" if per_prompt and per_prompt[0]["task"] == "knowledge" else "chat_quality"
    return {"stage": name, "run": {"model": "tiny", "objective": objective, "beta": beta, "seed": seed},
            "rows": mean_rows(per_prompt), "per_prompt": per_prompt}


def knowledge(scores):
    return [metric("knowledge", "acc", v, prompt_id=str(i)) for i, v in enumerate(scores)]


def test_alignment_tax_is_paired_over_documents():
    """The tuned model gets exactly the base model's documents right: a tax of 0 with no spread,
    although each model's own accuracy has a wide interval."""
    docs = [100.0, 0.0] * 20
    rows = {(r["objective"], r["metric"]): r for r in summarize([stage("base", 0, knowledge(docs)),
                                                                   stage("ce", 0, knowledge(docs))])}
    tax = rows[("ce", "alignment_tax_acc")]
    assert (tax["value"], tax["ci_low"], tax["ci_high"]) == (0.0, 0.0, 0.0)
    acc = rows[("ce", "acc")]
    assert acc["value"] == 50.0 and acc["ci_high"] - acc["ci_low"] > 20
    assert ("base", "alignment_tax_acc") not in rows
    # One flipped document: tax = 100 / 40 = 2.5 points, interval from resampling that document.
    flipped = stage("gem", 0, knowledge([0.0] + docs[1:]), beta="0.7")
    rows = {(r["objective"], r["metric"]): r for r in summarize([stage("base", 0, knowledge(docs)), flipped])}
    tax = rows[("gem", "alignment_tax_acc")]
    assert tax["value"] == pytest.approx(2.5) and tax["ci_low"] == 0.0 and 2.5 < tax["ci_high"] <= 10.0


def test_every_forgetting_task_of_the_knowledge_stage_gets_a_paired_tax():
    """With real data the knowledge stage holds the leaderboard tasks under their own names."""
    def leaderboard(arc, mmlu):
        return [*[metric("arc_challenge", "acc_norm", v, prompt_id=str(i)) for i, v in enumerate(arc)],
                *[metric("mmlu", "acc", v, prompt_id=f"anatomy/{i}") for i, v in enumerate(mmlu)]]

    base, tuned = leaderboard([100.0, 0.0] * 10, [100.0] * 8), leaderboard([100.0, 0.0] * 10, [0.0] + [100.0] * 7)
    stages = [{**stage(objective, 0, rows), "stage": "knowledge"} for objective, rows in (("base", base), ("ce", tuned))]
    rows = {(r["objective"], r["task"], r["metric"]): r for r in summarize(stages)}
    assert rows[("ce", "arc_challenge", "alignment_tax_acc_norm")]["value"] == 0.0
    assert rows[("ce", "mmlu", "alignment_tax_acc")]["value"] == pytest.approx(12.5)
    assert not any(r["metric"].startswith("alignment_tax") for key, r in rows.items() if key[0] == "base")


def test_metrics_table_and_summary_share_one_alignment_tax():
    """results/metrics.csv lists, per seed, the taxes whose mean over seeds the summary reports, for the
    world's probes and the leaderboard tasks alike."""
    def scores(knowledge_acc, arc):
        return [*knowledge(knowledge_acc),
                *[metric("arc_challenge", "acc_norm", v, prompt_id=f"arc/{i}") for i, v in enumerate(arc)]]

    stages = [{**stage(objective, seed, scores(acc, arc)), "stage": "knowledge"}
              for objective, seed, acc, arc in (("base", 0, [100.0] * 8, [100.0, 0.0] * 4),
                                                ("ce", 1, [0.0] + [100.0] * 7, [0.0] * 8),
                                                ("ce", 2, [0.0] * 2 + [100.0] * 6, [100.0, 0.0] * 4))]
    listed = [r for r in metrics_records(stages) if r["metric"].startswith("alignment_tax_")]
    assert {(r["seed"], r["task"], r["metric"], r["value"]) for r in listed} == {
        (1, "knowledge", "alignment_tax_acc", "12.5"), (2, "knowledge", "alignment_tax_acc", "25.0"),
        (1, "arc_challenge", "alignment_tax_acc_norm", "50.0"),
        (2, "arc_challenge", "alignment_tax_acc_norm", "0.0")}
    summary = {(r["task"], r["metric"]): r["value"] for r in summarize(stages)
               if r["metric"].startswith("alignment_tax_")}
    assert summary == {("knowledge", "alignment_tax_acc"): 18.75, ("arc_challenge", "alignment_tax_acc_norm"): 25.0}


def test_summary_is_deterministic_and_a_rows_interval_ignores_other_runs(tmp_path):
    rng = np.random.default_rng(7)
    chat = [metric("chat", "win_rate", v, 1, prompt_id=f"p{i}") for i, v in enumerate(rng.uniform(0, 100, 25))]
    a = summarize([stage("ce", 0, chat), stage("ce", 1, chat[::-1])])
    b = summarize([stage("gem", 0, chat[:10], beta="0.7"), stage("ce", 1, chat[::-1]), stage("ce", 0, chat)])
    [row] = a
    assert row == next(r for r in b if r["objective"] == "ce")
    assert row["n_seeds"] == 2 and row["n_prompts"] == 25 and row["k"] == 1
    assert row["ci_low"] < row["value"] < row["ci_high"]

    paths = []
    for i, s in enumerate([stage("ce", 0, chat), {**stage("gem", 0, [], beta="0.7"),
                                                  "rows": [metric("parameters", "l2_distance_from_base", 1.5)]}]):
        paths.append(tmp_path / f"{i}.json")
        files.write_json(paths[-1], s)
    out = tmp_path / "summary.csv"
    assert write_summary([str(p) for p in paths], str(out)) == 2
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    distance = next(r for r in rows if r["metric"] == "l2_distance_from_base")
    assert (distance["value"], distance["k"], distance["ci_low"], distance["ci_high"]) == ("1.5", "", "", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.json", "1.json", "summary.csv"]
