"""The report's tables (gemsft.report.tables, cells, claims, table_files) and labels on synthetic summaries
with known values, and the paper's numbers as a data file."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from gemsft.config import NO_BETA, beta_label
from gemsft.report import claims, registry, table_files, tables
from gemsft.report.cells import DERIVED_METRICS, format_ci
from gemsft.report.labels import OBJECTIVE_ORDER, objective_label, run_sort_key
from gemsft.report.summary import SUMMARY_COLUMNS
from gemsft.report.summary_reader import load_summary

# What the project's stages write (task -> metrics), from the evaluation modules' docs.
PRODUCED = {
    "chat": {"bon_reward", "win_rate", "hard_win_rate", "ngram_diversity", "self_bleu_diversity",
             "sbert_diversity", "acceptance", "coverage", "kl_to_world", "truncated", "ead_diversity",
             "vendi_score", "distinct_k"},
    "code": {"pass_at_k", "truncated"},
    "humaneval": {"pass_at_k", "truncated"},
    "math": {"greedy_accuracy", "majority_accuracy", "pass_rate", "truncated"},
    "knowledge": {"acc", "acc_norm", "alignment_tax_acc", "alignment_tax_acc_norm"},
    "sft_test": {"entropy", "perplexity"},
    "parameters": {"l2_distance_from_base"},
}
K_METRICS = {"bon_reward", "win_rate", "hard_win_rate", "pass_at_k", "majority_accuracy", "pass_rate"}
NAN = math.nan


def row(objective, beta, task, metric, k, value, low=NAN, high=NAN, model="tiny"):
    return {"model": model, "objective": objective, "beta": beta, "task": task, "metric": metric, "k": k,
            "value": value, "ci_low": low, "ci_high": high, "n_prompts": 8, "n_seeds": 3}


def summary(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


RUNS = [("gem_log_sigmoid", "0.7"), ("neft", "na"), ("gem", "0.7"), ("ce", "na"), ("base", "na"),
        ("gem", "1"), ("ce_wd", "na")]  # deliberately not in display order
ORDER = ["Pre-trained", "CE", "CE + WD", "NEFT", "GEM (β=1)", "GEM (β=0.7)", "GEM (log-sigmoid, β=0.7)"]


@pytest.fixture
def full():
    """Every run with diversity and entropy; SFT runs with win rates, math, code and knowledge.
    GEM (either h) is better than CE everywhere, with separate intervals."""
    rows = []
    for i, (obj, beta) in enumerate(RUNS):
        gem = obj.startswith("gem")
        ngram = (30.0 if gem else 20.0) + i  # base 24, CE 23, GEM (β=0.7) 32
        rows += [row(obj, beta, "chat", "ngram_diversity", None, ngram, ngram - 1.0, ngram + 0.5),
                 row(obj, beta, "chat", "self_bleu_diversity", None, (80.0 if gem else 70.0) + i),
                 row(obj, beta, "sft_test", "entropy", None, 0.76 if gem else 0.42, 0.75 if gem else 0.4,
                     0.77 if gem else 0.43),
                 row(obj, beta, "sft_test", "perplexity", None, 3.456)]
        if obj == "base":
            rows.append(row(obj, beta, "knowledge", "acc", None, 60.0))
            continue
        win = 30.0 if gem else 20.0
        rows += [row(obj, beta, "chat", "win_rate", n, win + n, win + n - 1.0, win + n + 1.0) for n in (1, 2, 32)]
        tax = 0.5 if gem else 2.0
        rows += [row(obj, beta, "math", "greedy_accuracy", None, 50.0 if gem else 40.0),
                 row(obj, beta, "math", "majority_accuracy", 16, 70.0 if gem else 60.0),
                 row(obj, beta, "math", "pass_rate", 16, 90.0 if gem else 80.0),
                 row(obj, beta, "knowledge", "acc", None, 59.0),
                 row(obj, beta, "knowledge", "alignment_tax_acc", None, tax, tax - 0.5, tax + 0.4),
                 row(obj, beta, "knowledge", "alignment_tax_acc_norm", None, 0.1 if gem else 1.0)]
        rows += [row(obj, beta, task, "pass_at_k", k, (60.0 if gem else 50.0) + k / 10)
                 for task in ("code", "humaneval") for k in (1, 2, 10, 100, 200)]
    return summary(rows)


def column(df, name):
    return df[name].tolist()


# --------------------------------------------------------------------------- formatting and naming


def test_format_ci_uses_the_larger_side_and_drops_unknown_intervals():
    assert format_ci(12.3, 11.9, 12.6) == "12.3 ± 0.4"
    assert format_ci(10.0, 9.5, 10.8) == "10.0 ± 0.8"
    assert format_ci(0.4213, 0.41, 0.43, digits=2) == "0.42 ± 0.01"
    assert format_ci(10.0, NAN, NAN) == "10.0"
    assert format_ci(10.0, 9.0, None) == "10.0"
    assert format_ci(NAN, 1.0, 2.0) == ""
    assert format_ci(pd.NA, NAN, NAN) == ""


def test_beta_label_is_one_spelling_for_every_source():
    assert [beta_label(b) for b in (1.0, "1.0", "1", 1, 0.7, "0.70")] == ["1", "1", "1", "1", "0.7", "0.7"]
    assert {beta_label(b) for b in (None, NAN, "", " ", "na", "NaN", pd.NA)} == {NO_BETA}
    assert beta_label("high") == "high"  # not a number: kept, so a table still shows it
    assert beta_label(beta_label(0.123456789)) == beta_label(0.123456789)


def test_objective_labels_and_order():
    assert objective_label("base", "na") == "Pre-trained"
    assert objective_label("ce_entropy") == "CE + Entropy"
    assert objective_label("gem", "0.7") == "GEM (β=0.7)"
    assert objective_label("gem", 1.0) == "GEM (β=1)"
    assert objective_label("gem_log_sigmoid", "0.7") == "GEM (log-sigmoid, β=0.7)"
    assert objective_label("gem_log_sigmoid", "na") == "GEM (log-sigmoid)"
    assert objective_label("mystery", "na") == "mystery"
    runs = [("mystery", "na"), ("gem", "0.6"), ("gem", "1"), ("base", "na"), ("ce", "na")]
    assert sorted(runs, key=lambda r: run_sort_key(*r)) == [
        ("base", "na"), ("ce", "na"), ("gem", "1"), ("gem", "0.6"), ("mystery", "na")]


# --------------------------------------------------------------------------- the tables


def test_diversity_table_cells_and_order(full):
    df = tables.table2_diversity(full)
    assert list(df.columns) == ["run", "N-gram", "Self-BLEU", "Sentence-BERT"]  # no world-only columns here
    assert column(df, "run") == ORDER
    base = df.iloc[0]
    assert (base["N-gram"], base["Self-BLEU"], base["Sentence-BERT"]) == ("24.0 ± 1.0", "74.0", "")


def test_diversity_table_adds_world_columns_only_when_present(full):
    extra = row("ce", "na", "chat", "kl_to_world", None, 0.12345, 0.1, 0.13)
    df = tables.table2_diversity(summary(full.to_dict("records") + [extra]))
    assert list(df.columns)[-1] == "KL to world" and "Coverage" not in df.columns
    assert df.set_index("run").loc["CE", "KL to world"] == "0.123 ± 0.023"
    assert df.set_index("run").loc["GEM (β=1)", "KL to world"] == ""


def test_beta_sweep_has_ce_and_gem_only_and_names_bon_after_largest_k(full):
    df = tables.table3_beta_sweep(full)
    assert list(df.columns) == ["run", "single sample", "BoN@32"]
    assert column(df, "run") == ["CE", "GEM (β=1)", "GEM (β=0.7)", "GEM (log-sigmoid, β=0.7)"]
    assert df.iloc[0].tolist() == ["CE", "21.0 ± 1.0", "52.0 ± 1.0"]
    smaller = full[~((full.metric == "win_rate") & (full.k == 32))]
    assert list(tables.table3_beta_sweep(smaller).columns) == ["run", "single sample", "BoN@2"]


def test_math_titles_use_the_actual_k(full):
    df = tables.table4_math(full)
    assert list(df.columns) == ["run", "greedy", "majority@16", "pass@16"]
    assert df.iloc[0].tolist() == ["CE", "40.0", "60.0", "80.0"]
    eight = full.assign(k=full.k.mask((full.task == "math") & (full.metric != "greedy_accuracy"), 8))
    assert list(tables.table4_math(eight).columns) == ["run", "greedy", "majority@8", "pass@8"]


def test_math_table_shows_both_greedy_denominators_where_measured(full):
    # One frame built from rows: concatenating a one-row frame whose intervals are all NA is deprecated in pandas.
    both = summary(full.to_dict("records") + [row("ce", "na", "math", "greedy_accuracy_valid", None, 50.0)])
    df = tables.table4_math(both)
    assert list(df.columns) == ["run", "greedy", "greedy (answered)", "majority@16", "pass@16"]
    assert df.iloc[0].tolist()[:3] == ["CE", "40.0", "50.0"]


def test_entropy_table_includes_base_with_two_decimals(full):
    df = tables.entropy_table(full)
    assert column(df, "run") == ORDER
    assert df.iloc[0].tolist() == ["Pre-trained", "0.42 ± 0.02", "3.46"]
    assert df.iloc[-1]["entropy"] == "0.76 ± 0.01"


def test_alignment_tax_table_averages_the_taxes_of_sft_runs(full):
    df = tables.alignment_tax_table(full)
    assert list(df.columns) == ["run", "acc", "tax (acc)", "tax (acc_norm)", "tax (average)"]
    assert column(df, "run") == ORDER[1:]
    assert df.iloc[0].tolist() == ["CE", "59.0", "2.0 ± 0.5", "1.0", "1.5"]
    assert df.iloc[-1]["tax (average)"] == "0.3"


def test_alignment_tax_table_over_leaderboard_tasks_names_the_tasks_and_averages_them():
    rows = []
    for obj, beta, taxes in (("base", "na", None), ("ce", "na", (1.0, 2.0, 6.0)), ("gem", "0.7", (0.5, 0.0, 1.0))):
        tasks = (("arc_challenge", "acc_norm"), ("gsm8k", "exact_match"), ("mmlu", "acc"))
        for i, (task, metric) in enumerate(tasks):
            rows.append(row(obj, beta, task, metric, None, 10.0 * (i + 1)))
            if taxes:
                rows.append(row(obj, beta, task, f"alignment_tax_{metric}", None, taxes[i]))
    df = tables.alignment_tax_table(summary(rows))
    assert list(df.columns) == ["run", "ARC", "GSM8K", "MMLU", "tax (ARC)", "tax (GSM8K)", "tax (MMLU)",
                                "tax (average)"]
    assert df.iloc[0].tolist() == ["CE", "10.0", "20.0", "30.0", "1.0", "2.0", "6.0", "3.0"]
    assert df.iloc[1].tolist() == ["GEM (β=0.7)", "10.0", "20.0", "30.0", "0.5", "0.0", "1.0", "0.5"]


def test_code_table_keeps_only_the_reported_ks(full):
    df = tables.code_table(full)
    assert list(df.columns) == ["run", "code pass@1", "code pass@10", "code pass@100",
                                "HumanEval pass@1", "HumanEval pass@10", "HumanEval pass@100"]
    assert df.iloc[0]["HumanEval pass@100"] == "60.0"
    only_one = full[~((full.task == "humaneval") & (full.k != 1))]
    assert list(tables.code_table(only_one).columns)[-1] == "HumanEval pass@1"


def test_missing_metrics_give_empty_cells_not_errors():
    s = summary([row("ce", "na", "math", "pass_rate", 16, 88.8), row("gem", "0.7", "chat", "win_rate", 1, 24.9)])
    math_df = tables.table4_math(s)
    assert math_df.iloc[0].tolist() == ["CE", "", "", "88.8"]
    assert list(math_df.columns) == ["run", "greedy", "majority", "pass@16"]
    assert tables.table3_beta_sweep(s).iloc[0].tolist() == ["GEM (β=0.7)", "24.9"]
    for name, build in tables.TABLES.items():
        assert isinstance(build(s), pd.DataFrame), name


def test_empty_summary_is_an_error(full):
    for build in [*tables.TABLES.values(), lambda s: claims.paper_vs_reproduction(s, claims.load_paper())]:
        with pytest.raises(ValueError, match="summary has no rows"):
            build(full.iloc[:0])


def test_several_models_get_a_model_column(full):
    df = tables.entropy_table(pd.concat([full, full.assign(model="other")]))
    assert list(df.columns)[:2] == ["model", "run"]
    assert column(df, "model") == ["other"] * 7 + ["tiny"] * 7


def test_load_summary_types_and_beta_labels(tmp_path):
    path = tmp_path / "summary.csv"
    path.write_text("model,objective,beta,task,metric,k,value,ci_low,ci_high,n_prompts,n_seeds\n"
                    "tiny,gem,1.0,chat,win_rate,32,50.5,49,52,8,3\n"
                    "tiny,ce,na,sft_test,entropy,,0.4,,,8,3\n")
    s = load_summary(path)
    assert s.k.dtype == float and s.k.isna().tolist() == [False, True]
    assert s.beta.tolist() == ["1", "na"]  # the label gemsft.config.beta_label gives 1.0
    assert s.ci_low.dtype == float and math.isnan(s.ci_high.iloc[1])
    assert tables.table3_beta_sweep(s).iloc[0].tolist() == ["GEM (β=1)", "", "50.5 ± 1.5"]


# --------------------------------------------------------------------------- the paper's numbers


def test_paper_numbers_parse_and_name_metrics_we_produce():
    paper = claims.load_paper()
    assert len(paper) == 45 and not paper.value.isna().any()
    for r in paper.itertuples():
        assert r.metric in PRODUCED.get(r.task, set()) | DERIVED_METRICS, (r.task, r.metric)
        assert r.objective in OBJECTIVE_ORDER
        assert (r.beta == "na") == (not r.objective.startswith("gem")), r
        assert pd.isna(r.k) == (r.metric not in K_METRICS), r
        assert r.note.strip()
    gem = paper[paper.objective.str.startswith("gem")]
    assert set(gem[gem.source != "Table 3"].beta) == {"0.7"}
    assert set(gem[gem.source == "Table 3"].beta) == {"1", "0.9", "0.8", "0.7", "0.6"}
    assert not paper.duplicated(["objective", "beta", "task", "metric", "k"]).any()
    key = paper.set_index(["source", "objective", "beta", "metric", "k"]).value
    assert key[("Table 3", "gem_log_sigmoid", "0.7", "win_rate", 32)] == 50.4
    assert key[("Figure 7b", "gem_log_sigmoid", "0.7", "pass_at_k", 100)] == 82.5


def claims_frame(rows) -> pd.DataFrame:
    """results/claims.csv's rows: (id, verdict, difference, low, high), the rest as the rule writes it."""
    by_id = {c.id: c for c in claims.CLAIMS}
    records = [{"id": cid, "model": "tiny", "claim": by_id[cid].description, "task": by_id[cid].task,
                "metric": by_id[cid].metric, "k": by_id[cid].k, "arm_a": "GEM (β=0.7)", "arm_b": "CE",
                "direction": by_id[cid].direction, "value_a": NAN, "value_b": NAN, "difference": d, "ci_low": lo,
                "ci_high": hi, "n_items": 8, "n_seeds": 1, "verdict": verdict,
                "reason": "GEM (β=0.7) stands in for GEM (log-sigmoid, β=0.7)"}
               for cid, verdict, d, lo, hi in rows]
    return pd.DataFrame(records, columns=claims.CLAIMS_COLUMNS)


def test_comparison_rows_match_paper_numbers_with_fallback_and_missing(full):
    paper = claims.load_paper()
    verdicts = claims_frame([("entropy", "supported", 0.34, 0.31, 0.37),
                             ("math_majority", "inconclusive", 1.25, -0.5, 3.0)])
    # Without the log-sigmoid runs, the linear GEM stands in and the "our run" column says so.
    df = claims.paper_vs_reproduction(full[full.objective != "gem_log_sigmoid"], paper, verdicts)
    assert len(df) == len(paper) and list(df.columns) == claims.COMPARISON_COLUMNS
    entropy = df[df.what == "GEM (log-sigmoid, β=0.7): SFT test set entropy"].iloc[0]
    assert (entropy.paper, entropy.ours, entropy["our run"], entropy.difference) == (
        "0.76", "0.76 ± 0.01", "GEM (β=0.7)", "+0.00")
    assert (entropy.claim, entropy.verdict, entropy["claim difference (95% CI)"]) == (
        "GEM has higher entropy than CE", "supported", "GEM (β=0.7) − CE: +0.34 [+0.31, +0.37]")
    majority = df[df.what == "GEM (log-sigmoid, β=0.7): math majority@16"].iloc[0]
    assert (majority.verdict, majority["claim difference (95% CI)"]) == ("inconclusive", "GEM (β=0.7) − CE: +1.2 [-0.5, +3.0]")
    # A claim claims.csv has no row for, and a paper number no claim is about.
    tax = df[df.what == "GEM (log-sigmoid, β=0.7): knowledge alignment tax (average)"].iloc[0]
    assert (tax.claim, tax.verdict, tax["claim difference (95% CI)"]) == ("GEM has a lower alignment tax than CE", "—", "—")
    sweep = df[df.what == "GEM (log-sigmoid, β=0.8): chat win rate, BoN@32"].iloc[0]
    assert (sweep.ours, sweep.difference, sweep["our run"], sweep.claim, sweep.verdict) == ("—", "—", "—", "", "")
    # The exact objective wins when present.
    df = claims.paper_vs_reproduction(full, paper)
    assert df[df.what == "GEM (log-sigmoid, β=0.7): SFT test set entropy"].iloc[0]["our run"] == \
        "GEM (log-sigmoid, β=0.7)"
    assert df[df.what == "GEM (log-sigmoid, β=0.7): SFT test set entropy"].iloc[0].verdict == "—"  # no claims.csv
    ce = df[df.what == "CE: math majority@16"].iloc[0]
    assert (ce.source, ce.paper, ce.ours, ce.difference, ce.claim, ce.verdict) == (
        "Table 4", "67.3", "60.0", "-7.3", "", "")


def test_scoreboard_lists_every_claim_in_order_with_its_interval():
    rows = [(c.id, "untestable", NAN, NAN, NAN) for c in claims.CLAIMS[::-1]]
    rows[-1] = ("entropy", "supported", 0.344, 0.301, 0.372)  # given last, shown first
    df = tables.build_table("claims", None, None, claims_frame(rows))
    assert df["claim"].tolist() == [c.description for c in claims.CLAIMS]
    assert df.iloc[0].tolist() == ["GEM has higher entropy than CE", "SFT test set entropy: GEM (β=0.7) − CE",
                                   "+0.34 [+0.30, +0.37]", "supported",
                                   "GEM (β=0.7) stands in for GEM (log-sigmoid, β=0.7)"]
    assert df.iloc[2]["tested on"] == "HumanEval pass@100: GEM (β=0.7) − CE"
    assert df.iloc[1]["difference A − B (95% CI)"] == "—"
    two = pd.concat([claims_frame(rows), claims_frame(rows).assign(model="other")])
    assert tables.build_table("claims", None, None, two)["model"].tolist() == ["other"] * 13 + ["tiny"] * 13
    with pytest.raises(ValueError, match="claims have no rows"):
        claims.claims_table(claims_frame([]))


# --------------------------------------------------------------------------- writing


def test_write_table_writes_parseable_csv_md_and_tex(full, tmp_path):
    df = tables.table3_beta_sweep(full)
    paths = table_files.write_table(df, tmp_path / "out", "beta_sweep", "Win rates & 100% of β")
    assert [p.name for p in paths] == ["beta_sweep.csv", "beta_sweep.md", "beta_sweep.tex"]
    back = pd.read_csv(paths[0], dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(back, df.astype(str))
    md = paths[1].read_text(encoding="utf-8").splitlines()
    assert md[0] == "Win rates & 100% of β"
    table = [line for line in md if line.startswith("|")]
    assert [c.strip() for c in table[0].strip("|").split("|")] == list(df.columns)
    assert [c.strip() for c in table[2].strip("|").split("|")] == df.iloc[0].tolist()  # "24.0" stays text
    assert len(table) == 2 + len(df)
    tex = paths[2].read_text(encoding="utf-8")
    assert r"\caption{Win rates \& 100\% of $\beta$}" in tex and r"\label{tab:beta_sweep}" in tex
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == len(df) and all(line.count("&") == len(df.columns) - 1 for line in body)
    assert r"GEM ($\beta$=0.7) & 31.0 $\pm$ 1.0 & 62.0 $\pm$ 1.0 \\" in body


def test_write_table_leaves_nothing_behind_on_error(full, tmp_path, monkeypatch):
    out = tmp_path / "out"
    df = tables.entropy_table(full)
    table_files.write_table(df, out, "entropy", "old")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("latex failed")

    monkeypatch.setattr(table_files, "_to_latex", broken)
    with pytest.raises(RuntimeError, match="latex failed"):
        table_files.write_table(df.iloc[:1], out, "entropy", "new")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp files, old set intact
    with pytest.raises(RuntimeError):
        table_files.write_table(df, out, "fresh", "new")
    assert not any(p.name.startswith((".fresh", "fresh")) for p in out.iterdir())


def test_every_table_the_registry_names_has_a_builder():
    # The claims' scoreboard opens the report; the comparison with the paper closes it.
    assert (tables.SCOREBOARD, tables.DATA, *tables.TABLES, tables.COMPARISON) == registry.TABLE_NAMES
    assert set(tables.TABLE_NAMES) == set(registry.TABLE_CAPTIONS)


def test_build_all_writes_every_table(full, tmp_path):
    assert {p.stem for p in tables.build_all(full, claims.load_paper(), tmp_path / "no_claims")} == \
        set(tables.TABLES) | {"paper_vs_reproduction"}
    out = tmp_path / "with_claims"
    paths = tables.build_all(full, claims.load_paper(), out, claims_frame([("entropy", "supported", 0.3, 0.2, 0.4)]))
    names = {p.stem for p in paths}
    assert names == set(tables.TABLES) | {"paper_vs_reproduction", "claims"}
    assert len(paths) == 3 * len(names) and all(p.is_file() for p in paths)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
