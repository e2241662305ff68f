"""The Snakemake DAG end to end: lint, planning, config validation, and the real default run
(world -> pretrain -> SFT with every objective) in a fresh copy of the project."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from gemsft import files
from gemsft.config import sft_runs
from gemsft.data.world import judge
from gemsft.data.world.chat import universe
from gemsft.data.world.lexicon import NAMES

from conftest import REPO, copy_project, planned_jobs
from conftest import run_snakemake as snakemake


def test_lint_is_clean():
    result = snakemake(REPO, "--lint")
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr


def test_default_plan_trains_every_objective(tmp_path):
    project = copy_project(tmp_path)
    config = yaml.safe_load((project / "config/config.yaml").read_text())
    counts = planned_jobs(snakemake(project, "-n", "--cores", "1", "trained_models"))
    assert counts == {"world": 1, "pretrain": 1, "train": len(config["train"]["objectives"]), "trained_models": 1}
    assert len(config["train"]["objectives"]) == 6


def test_sweep_config_trains_ce_and_every_gem_beta(tmp_path):
    project = copy_project(tmp_path)
    result = snakemake(project, "-n", "--cores", "1", "trained_models", "--configfile", "config/sweep.yaml")
    assert planned_jobs(result)["train"] == 1 + 5
    for beta in ("1", "0.9", "0.8", "0.7", "0.6"):
        assert f"results/sft/tiny/gem/beta-{beta}/seed-1234/model" in result.stdout


def test_study_config_plans_six_objectives_times_three_seeds_and_the_verdicts(tmp_path):
    """config/study.yaml (docs/pipeline.md): every objective of the paper at three training seeds, CE
    and the log-sigmoid GEM at four more, every evaluation item, the samples the claims need (32 chat, 100 code per
    problem), then the verdicts; config/calibration.yaml trains CE alone, at the study's seeds."""
    project = copy_project(tmp_path)
    study = yaml.safe_load((project / "config/study.yaml").read_text())
    assert len(study["train"]["seeds"]) >= 3 and 100 in study["evaluation"]["pass_k"]
    assert study["sampling"]["tasks"]["chat"]["n"] >= 32 and study["sampling"]["tasks"]["code"]["n"] >= 100
    extra = study["train"]["extra_seeds"]
    # The claims' GEM is the log-sigmoid one (gemsft.report.claims), so its arm gets the seeds.
    assert set(extra) == {"ce", "gem_log_sigmoid"} and len(extra["ce"]) == len(extra["gem_log_sigmoid"]) == 4
    result = snakemake(project, "-n", "--cores", "1", "--configfile", "config/study.yaml")
    counts = planned_jobs(result)
    assert counts["train"] == 6 * 3 + 2 * 4 and counts["sample"] == 6 * 3 + 2 * 4 and counts["claims"] == 1
    assert counts["evaluate_math"] == 6 * 3 + 2 * 4 + 1  # the base model answers math too (calibration)
    assert "results/sft/tiny/gem_log_sigmoid/beta-0.7/seed-1240/model" in result.stdout
    assert "results/sft/tiny/gem/beta-0.7/seed-1237/model" not in result.stdout
    assert "results/sft/tiny/neft/beta-na/seed-1237/model" not in result.stdout
    counts = planned_jobs(snakemake(project, "-n", "--cores", "1", "--configfile", "config/calibration.yaml"))
    assert counts["train"] == 3 and counts["evaluate_math"] == 3 + 1


@pytest.mark.parametrize("override, message", [
    ({"train": {"unknown_key": 1}}, "'train': Additional properties are not allowed ('unknown_key'"),
    ({"train": {"epochs": "three"}}, "'train.epochs': 'three' is not of type 'number'"),
    ({"train": {"gem_betas": [0.0]}}, "'train.gem_betas.0'"),
    ({"train": {"objectives": ["ce", "gem_v2"]}}, "'train.objectives.1': 'gem_v2' is not one of"),
    ({"train": {"extra_seeds": {"dft": [7]}}}, "'train.extra_seeds.dft': 'dft' is not one of train.objectives"),
    ({"train": {"extra_seeds": {"gem": [1234]}}}, "'train.extra_seeds.gem': seed 1234 is already in train.seeds"),
])
def test_bad_config_is_one_clear_line(tmp_path, override, message):
    project = copy_project(tmp_path)
    (project / "bad.yaml").write_text(yaml.safe_dump(override))
    result = snakemake(project, "-n", "--cores", "1", "--configfile", "bad.yaml", check=False)
    assert result.returncode != 0
    assert f"invalid config at {message}" in result.stdout + result.stderr
    assert not (project / "results").exists()


# --- the real default run -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_run(pipeline_run) -> Path:
    return pipeline_run


@pytest.mark.slow
def test_default_run_trains_every_objective(default_run):
    config = yaml.safe_load((default_run / "config/config.yaml").read_text())
    runs = sft_runs(config)
    assert {run.objective for run in runs} == set(config["train"]["objectives"])
    for run in runs:
        out = default_run / "results/sft" / run.path
        assert (out / "model/config.json").is_file() and (out / "model/model.safetensors").is_file()
        metrics = files.read_json(out / "train_metrics.json")
        assert metrics["objective"] == run.objective and metrics["finite"]
        assert all(math.isfinite(metrics["final"][k]) for k in ("loss", "ce", "entropy", "grad_norm"))
        assert (default_run / f"results/benchmarks/train/{run.path}.tsv").is_file()
    # Nothing is left to do: every output is complete and up to date.
    assert "Nothing to be done" in snakemake(default_run, "-n", "--cores", "1", "--configfile", "config/ci.yaml").stdout


EXPECTED_METRICS = {
    "chat": {"bon_reward", "win_rate", "hard_win_rate", "ngram_diversity", "self_bleu_diversity", "sbert_diversity",
             "acceptance", "coverage", "kl_to_world", "ead_diversity", "vendi_score", "distinct_k"},
    "code": {"pass_at_k"}, "humaneval": {"pass_at_k"},
    "math": {"greedy_accuracy", "majority_accuracy", "pass_rate"},
    "knowledge": {"acc", "acc_norm", "alignment_tax_acc", "alignment_tax_acc_norm"},
    "sft_test": {"entropy", "perplexity"}, "parameters": {"l2_distance_from_base"},
}


@pytest.mark.slow
def test_metrics_table_has_every_metric_for_every_objective(default_run):
    import pandas as pd

    config = yaml.safe_load((default_run / "config/config.yaml").read_text())
    table = pd.read_csv(default_run / "results/metrics.csv", keep_default_na=False)
    assert list(table.columns) == ["model", "objective", "beta", "seed", "task", "metric", "k", "value"]
    for objective in config["train"]["objectives"]:
        rows = table[table.objective == objective]
        for task, metrics in EXPECTED_METRICS.items():
            assert metrics <= set(rows[rows.task == task].metric), (objective, task)
        ks = set(rows[(rows.task == "chat") & (rows.metric == "win_rate")].k.astype(int))
        assert ks == set(config["evaluation"]["bon_n"])
        code_ks = set(rows[(rows.task == "code") & (rows.metric == "pass_at_k")].k.astype(int))
        assert code_ks == set(config["evaluation"]["pass_k"])  # n = 200 covers every k
    base = table[table.objective == "base"]
    assert {"ngram_diversity", "coverage"} <= set(base[base.task == "chat"].metric)
    assert "acc" in set(base[base.task == "knowledge"].metric)
    assert table.value.astype(float).notna().all()
    # Provenance travels with every stage output.
    stage = files.read_json(next((default_run / "results/eval").rglob("math.json")))
    assert stage["provenance"]["config_hash"] and stage["provenance"]["versions"]["torch"]
    # The field's formats are exported beside our own.
    gem = default_run / "results/exports/tiny/gem/beta-0.7/seed-1234"
    outputs = files.read_json(gem / "alpaca_eval_model_outputs.json")
    assert {"instruction", "output", "generator"} <= set(outputs[0])
    assert {"task_id", "completion"} == set(files.read_jsonl(gem / "humaneval_samples.jsonl")[0])


@pytest.mark.slow
def test_samples_have_the_papers_counts(default_run):
    config = yaml.safe_load((default_run / "config/ci.yaml").read_text())
    run = default_run / "results/samples/tiny/gem/beta-0.7/seed-1234"
    for task in ("chat", "code", "humaneval", "math"):
        rows = files.read_jsonl(run / f"{task}.jsonl")
        per_prompt = {}
        for row in rows:
            per_prompt[row["prompt_id"]] = per_prompt.get(row["prompt_id"], 0) + 1
            assert row["finish_reason"] in ("stop", "length") and row["num_tokens"] >= 0
        assert set(per_prompt.values()) == {config["sampling"]["tasks"][task]["n"]}
    assert config["sampling"]["tasks"]["chat"]["n"] == 32 and config["sampling"]["tasks"]["code"]["n"] == 200


@pytest.mark.slow
def test_gem_keeps_more_entropy_than_ce(default_run):
    """The paper's central training-time observation (Section 6: CE 0.42 vs GEM 0.76 entropy):
    after SFT on the same data, GEM's mean next-token entropy on the SFT data stays higher than CE's."""
    def final_entropy(objective, beta):
        path = default_run / f"results/sft/tiny/{objective}/beta-{beta}/seed-1234/train_metrics.json"
        return files.read_json(path)["final"]["entropy"]

    assert final_entropy("gem", "0.7") > 1.2 * final_entropy("ce", "na")


def chance_acceptance(probe: dict) -> float:
    """Acceptance rate of a guesser that knows the kind of answer but not the request: a uniformly
    random answer of the kind (a random person, for greetings)."""
    if probe["kind"] == "greet":
        return 1 / len(NAMES)
    kind_answers = universe(probe["kind"])
    return len(set(probe["acceptable"]) & set(kind_answers)) / len(kind_answers)


@pytest.mark.slow
def test_base_model_learns_the_world(default_run):
    """Greedy answers of the pretrained base model to held-out pretraining-style chat prompts
    (surface forms never seen in pretraining) are acceptable far above chance.

    Threshold: at least 0.6 and at least twice the chance rate. Chance here is about 0.25 (see
    chance_acceptance); the default base model reaches about 0.75, and 0.6 leaves two binomial
    standard deviations (29 probes) for numerical drift across platforms."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = default_run / "results/base/tiny"
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    probes = [p for p in files.read_jsonl(default_run / "results/data/probes.jsonl") if p["family"] == "chat"]
    batch = tokenizer([tokenizer.bos_token + p["text"] for p in probes], return_tensors="pt", padding=True,
                      add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=32, do_sample=False)
    answers = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    accepted = sum(judge("chat", p, a) is not None for p, a in zip(probes, answers)) / len(probes)
    chance = sum(chance_acceptance(p) for p in probes) / len(probes)
    assert chance < 0.35
    assert accepted >= max(0.6, 2 * chance), (accepted, chance, list(zip(probes, answers))[:5])


# --- the report: its contents, checked against the summary, not the sizes of its files --------------

# "12.3 ± 0.4": a number and the larger side of its interval (gemsft.report.cells.format_ci).
CELL = re.compile(r"^(-?\d+(?:\.(\d+))?) ± (\d+(?:\.\d+)?)$")
# "+3.1 [+1.2, +5.0]": a paired difference and its interval.
DIFFERENCE = re.compile(r"([+-]\d+(?:\.\d+)?) \[([+-]\d+(?:\.\d+)?), ([+-]\d+(?:\.\d+)?)\]$")
# Columns of the summary's tables that hold no number with an interval: labels, the truncation flag,
# and the mean of the alignment taxes (a mean of means, documented without one).
NOT_INTERVALS = {"model", "run", "flag", "tax (average)"}
RUN_TABLES = ("diversity", "beta_sweep", "math", "entropy", "alignment_tax", "code", "truncation")
RM_ACCURACY = "reward_model_accuracy"


def read_summary(run: Path):
    import pandas as pd

    summary = pd.read_csv(run / "results/summary.csv", dtype={"beta": str}, keep_default_na=False)
    for column in ("value", "ci_low", "ci_high", "k"):
        summary[column] = [float(text) if text != "" else math.nan for text in summary[column]]
    return summary


def run_labels(summary) -> dict:
    """{display label: (objective, beta)} of the summary's runs."""
    from gemsft.report.labels import objective_label

    return {objective_label(o, b): (o, b) for o, b in zip(summary.objective, summary.beta)}


def shows(row, text: str) -> bool:
    """The cell `text` ("value ± half") is this summary row: its value and the larger side of its
    interval, each up to the cell's rounding."""
    found = CELL.match(text)
    assert found, f"{text!r} is not a number with its interval"
    value, half = float(found.group(1)), float(found.group(3))
    tolerance = 0.5 * 10 ** -len(found.group(2) or "") + 1e-9
    return abs(row.value - value) <= tolerance and \
        abs(max(row.value - row.ci_low, row.ci_high - row.value) - half) <= tolerance


def assert_interval_cell(summary, table: str, label: str, column: str, text: str) -> None:
    """The cell is one of the run's summary numbers with its interval."""
    assert CELL.match(text), f"{table}: {label!r}, column {column!r} is {text!r}, not a number with its interval"
    objective, beta = run_labels(summary)[label]
    rows = summary[(summary.objective == objective) & (summary.beta == beta)]
    assert any(shows(row, text) for row in rows.itertuples(index=False)), (table, label, column, text)


def summary_value(summary, objective, beta, task, metric, k=None):
    rows = summary[(summary.objective == objective) & (summary.beta == beta) & (summary.task == task)
                   & (summary.metric == metric)]
    rows = rows[rows.k.isna()] if k is None else rows[rows.k == float(k)]
    assert len(rows) == 1, (objective, beta, task, metric, k)
    return rows.iloc[0]


@pytest.mark.slow
def test_summary_gives_every_per_item_number_its_interval(default_run):
    import numpy as np

    summary = read_summary(default_run)
    per_item = summary[summary.n_prompts > 0]
    finite = np.isfinite(per_item[["value", "ci_low", "ci_high"]]).all(axis=1)
    assert finite.all(), per_item[~finite].head()
    inside = (per_item.ci_low <= per_item.value + 1e-9) & (per_item.value <= per_item.ci_high + 1e-9)
    assert inside.all(), per_item[~inside].head()
    # Only the parameter distance has no per-item values; it gets an interval from several seeds only.
    without = summary[summary.n_prompts == 0]
    assert set(without.metric) == {"l2_distance_from_base"}
    assert (without.ci_low.isna() == (without.n_seeds == 1)).all()
    # Prompts differ: most intervals have a width (not a constant filled in).
    assert (per_item.ci_high > per_item.ci_low).mean() > 0.5
    tax = summary[(summary.objective == "ce") & (summary.metric == "alignment_tax_acc")]
    assert len(tax) == 1 and np.isfinite(tax.ci_low.iloc[0])  # paired over documents


@pytest.mark.slow
def test_every_table_row_shows_summary_numbers_with_their_intervals(default_run):
    """Each run's row of each table: every number is one of the summary's for that run, with its
    interval; the comparison's and the scoreboard's intervals hold their values; the data table's
    counts are the rows of the data files."""
    import pandas as pd

    from gemsft.report.claims import CLAIM_IDS, VERDICTS

    summary = read_summary(default_run)

    def table(name):
        return pd.read_csv(default_run / f"results/tables/{name}.csv", dtype=str, keep_default_na=False)

    for name in RUN_TABLES:
        rows = table(name)
        assert len(rows) > 0 and set(rows.run) <= set(run_labels(summary)), name
        numbers = [c for c in rows.columns if c not in NOT_INTERVALS]
        for row in rows.to_dict("records"):
            shown = [c for c in numbers if row[c] != ""]
            assert shown, (name, row)
            for column in shown:
                assert_interval_cell(summary, name, row["run"], column, row[column])
    # The reward model's held-out accuracy beside the win rates it scored.
    sweep = table("beta_sweep")
    assert {"single sample", "BoN@32", "RM held-out accuracy"} <= set(sweep.columns)
    for row in sweep.to_dict("records"):
        accuracy = summary_value(summary, *run_labels(summary)[row["run"]], "chat", RM_ACCURACY)
        assert shows(accuracy, row["RM held-out accuracy"]), row

    comparison = table("paper_vs_reproduction")
    assert {"paper", "ours", "difference", "verdict", "claim difference (95% CI)", "RM held-out accuracy"} <= \
        set(comparison.columns)
    for row in comparison.to_dict("records"):
        if row["ours"] == "—" or row["what"].endswith("alignment tax (average)"):  # no run; a mean of means
            assert row["RM held-out accuracy"] == "", row
            continue
        label = row["our run"].split(";")[0]
        assert_interval_cell(summary, "paper_vs_reproduction", label, "ours", row["ours"])
        win_rate = ": chat win rate, " in row["what"]
        assert (row["RM held-out accuracy"] != "") == win_rate, row
        if win_rate:
            accuracy = summary_value(summary, *run_labels(summary)[label], "chat", RM_ACCURACY)
            assert shows(accuracy, row["RM held-out accuracy"]), row
    for text in filter(None, comparison["claim difference (95% CI)"]):
        d, lo, hi = map(float, DIFFERENCE.search(text).groups())
        assert lo <= d <= hi, text

    scoreboard = table("claims")
    assert set(scoreboard.verdict) <= set(VERDICTS) and len(scoreboard) == len(CLAIM_IDS)
    for row in scoreboard.to_dict("records"):
        found = DIFFERENCE.match(row["difference A − B (95% CI)"])
        assert found or row["verdict"] == "untestable", row
        if found:
            d, lo, hi = map(float, found.groups())
            assert lo <= d <= hi, row

    for row in table("data").to_dict("records"):
        dropped = sum(int(row[c]) for c in row if c.startswith("dropped"))
        lines = len((default_run / "results/data" / row["file"]).read_text(encoding="utf-8").splitlines())
        assert int(row["rows written"]) == lines and int(row["rows in"]) == lines + dropped, row


# Figures whose x axis is the number of samples k: their points are keyed by it.
K_ON_X = ("fig7a_bon_scaling", "fig7b_pass_at_k")
# Lines drawn without their band (Figure 7(a)'s reward-model picks, so the two families stay readable).
UNBANDED = {("fig7a_bon_scaling", "rm_selected_oracle_win_rate")}


def expected_figure_rows(name: str, summary, config: dict) -> dict:
    """(panel, objective, beta, metric, k or None) -> the summary row a figure must plot there, for
    every run and k the summary has; empty for the figures not drawn from the summary."""
    def runs(task, metric):
        rows = summary[(summary.task == task) & (summary.metric == metric)]
        return sorted(set(zip(rows.objective, rows.beta)))

    def ks(task, metric):
        return sorted(set(summary[(summary.task == task) & (summary.metric == metric)].k.dropna()))

    want = {}
    if name == "fig7a_bon_scaling":
        for panel, metric in (("reward model", "win_rate"), ("oracle", "oracle_win_rate"),
                              ("oracle", "rm_selected_oracle_win_rate")):
            for o, b in runs("chat", metric):
                for k in ks("chat", metric):
                    want[panel, o, b, metric, str(float(k))] = summary_value(summary, o, b, "chat", metric, k)
    elif name == "fig6_diversity_vs_winrate":
        largest = max(ks("chat", "win_rate"))
        for o, b in runs("chat", "win_rate"):
            want[config["report"]["diversity_metric"], o, b, "win_rate", None] = \
                summary_value(summary, o, b, "chat", "win_rate", largest)
    elif name == "fig7b_pass_at_k":
        for task in ("code", "humaneval"):
            for o, b in runs(task, "pass_at_k"):
                for k in ks(task, "pass_at_k"):
                    want[task, o, b, "pass_at_k", str(float(k))] = summary_value(summary, o, b, task, "pass_at_k", k)
    elif name == "fig8_knowledge":
        for task, metric in config["report"]["knowledge_tasks"]:
            for o, b in runs(task, metric):
                want[f"{task} {metric}", o, b, metric, None] = summary_value(summary, o, b, task, metric)
    elif name == "fig9_parameter_distance":
        for o, b in runs("parameters", "l2_distance_from_base"):
            if o != "base":
                want["parameters", o, b, "l2_distance_from_base", None] = \
                    summary_value(summary, o, b, "parameters", "l2_distance_from_base")
    return want


@pytest.mark.slow
def test_every_figure_plots_every_runs_numbers(default_run):
    """Each figure's plotted data (figures/<name>.csv, what its axes show) against the summary, the
    claims and the config: every run, every k, the value and the interval drawn."""
    import numpy as np

    from gemsft.report.claims import CLAIM_IDS, load_claims
    from gemsft.report.figures import FIGURES
    from gemsft.report.registry import COMPARISON_FIGURE_NAMES
    from gemsft.report.figures.plotted import read_plotted
    from gemsft.report.labels import objective_label

    config = yaml.safe_load((default_run / "config/config.yaml").read_text())
    summary = read_summary(default_run)
    drawn = {path.stem for path in (default_run / "figures").glob("*.png")}
    # one model: no scalability figure; the objectives comparison's figures only with report.comparison
    assert drawn == set(FIGURES) - {"fig12_model_gains", *COMPARISON_FIGURE_NAMES}
    for name in sorted(drawn):
        data = read_plotted(default_run / f"figures/{name}.csv")
        assert files.read_json(default_run / f"figures/{name}.provenance.json")["rule"] == "figure"
        want = expected_figure_rows(name, summary, config)
        if want:
            runs = data[data.objective != ""]
            got = {(r.panel, r.objective, r.beta, r.metric, r.x if name in K_ON_X else None): r
                   for r in runs.itertuples(index=False)}
            assert set(got) == set(want), (name, set(want) ^ set(got))
            for key, row in want.items():
                plotted = got[key]
                assert plotted.value == pytest.approx(row.value), (name, key)
                interval = (plotted.ci_low, plotted.ci_high)
                if (name, key[3]) in UNBANDED:
                    assert np.isnan(interval).all(), (name, key)
                else:  # the summary's interval (none for a one-seed parameter distance)
                    assert interval == pytest.approx((row.ci_low, row.ci_high), nan_ok=True), (name, key)
    # Figure 6's x axis is each run's diversity, with its interval.
    fig6 = read_plotted(default_run / "figures/fig6_diversity_vs_winrate.csv")
    for row in fig6[fig6.objective != ""].itertuples(index=False):
        diversity = summary_value(summary, row.objective, row.beta, "chat", config["report"]["diversity_metric"])
        assert (float(row.x), row.x_low, row.x_high) == \
            pytest.approx((diversity.value, diversity.ci_low, diversity.ci_high))
    # The reward model's held-out accuracy beside the win rates (one reward model: one value for every run).
    accuracy = summary[summary.metric == RM_ACCURACY]
    for name in ("fig6_diversity_vs_winrate", "fig7a_bon_scaling"):
        data = read_plotted(default_run / f"figures/{name}.csv")
        (row,) = data[data.metric == RM_ACCURACY].itertuples(index=False)
        assert row.value == pytest.approx(accuracy.value.iloc[0]) and accuracy.value.nunique() == 1
        # approx: the figure's CSV and the summary round-trip the same float through text (1 ulp apart)
        assert any((row.ci_low, row.ci_high) == pytest.approx(pair) for pair in zip(accuracy.ci_low, accuracy.ci_high))
    # The claims: one row each, the difference as claims.csv has it (signed the paper's way), no point
    # for an untestable claim.
    forest = read_plotted(default_run / "figures/claims_forest.csv").set_index("x")
    claims = load_claims(default_run / "results/claims.csv").set_index("id")
    assert sorted(forest.index) == sorted(CLAIM_IDS)
    for claim_id, row in forest.iterrows():
        claim = claims.loc[claim_id]
        assert row.series == claim.verdict
        if claim.verdict == "untestable":
            assert np.isnan(row.value)
            continue
        sign = 1.0 if claim.direction == ">" else -1.0
        assert row.value == pytest.approx(sign * claim.difference) and row.ci_low <= row.value <= row.ci_high
    # Figure 11: a panel per run of report.next_token_objectives, probabilities of one distribution each.
    tokens = read_plotted(default_run / "figures/fig11_next_token.csv")
    shown = set(config["report"]["next_token_objectives"])
    assert set(tokens.panel) == {objective_label(o, b) for o, b in run_labels(summary).values() if o in shown}
    assert ((tokens.value > 0) & (tokens.value <= 1)).all()
    assert (tokens.groupby(["panel", "series"]).value.sum() <= 1 + 1e-6).all()
    # Figures 2-4 and Proposition 2: distributions over 10 tokens, and a trajectory per method.
    transfer = read_plotted(default_run / "figures/probability_transfer.csv")
    assert set(transfer.panel) == {"transfer", "target probability", "proposition 2"}
    final = transfer[transfer.panel == "transfer"].groupby("series").value
    assert (final.size() == 10).all() and np.allclose(final.sum(), 1.0)
    steps = transfer[transfer.panel == "target probability"].groupby("series").x
    assert steps.size().nunique() == 1 and steps.size().iloc[0] > 100


@pytest.mark.slow
def test_editing_a_figure_module_or_plot_option_replots_only(default_run):
    """Figures regenerate without re-training or re-sampling (and quickly: benchmarks/regenerate_figures.py)."""
    module = default_run / "workflow/gemsft/report/figures/fig7a_bon_scaling.py"
    module.write_text(module.read_text() + "# an edit\n")  # a bare touch is no change to Snakemake
    assert planned_jobs(snakemake(default_run, "-n", "--cores", "1", "--configfile", "config/ci.yaml")) == \
        {"figure": 1, "all": 1}
    (default_run / "dpi.yaml").write_text(yaml.safe_dump({"report": {"dpi": 90}}))
    counts = planned_jobs(snakemake(default_run, "-n", "--cores", "1", "--configfile", "config/ci.yaml", "dpi.yaml"))
    assert set(counts) == {"figure", "all"}
    tables = default_run / "workflow/gemsft/report/tables.py"
    tables.write_text(tables.read_text() + "# an edit\n")
    counts = planned_jobs(snakemake(default_run, "-n", "--cores", "1", "--configfile", "config/ci.yaml"))
    assert set(counts) == {"figure", "table", "all"}
    before = (default_run / "figures/fig9_parameter_distance.png").stat().st_mtime_ns
    snakemake(default_run, "--cores", "2", "--configfile", "config/ci.yaml")
    assert (default_run / "figures/fig9_parameter_distance.png").stat().st_mtime_ns == before
    assert "Nothing to be done" in snakemake(default_run, "-n", "--cores", "1", "--configfile", "config/ci.yaml").stdout


@pytest.mark.slow
def test_snakemake_report_has_a_section_per_table_and_figure(default_run):
    """The HTML report: one section per table and figure the run wrote, each with its caption and
    the file itself, so the win rates' table carries the reward model's held-out accuracy."""
    from gemsft.report.registry import TABLE_NAMES

    from test_report_front_page import assert_captioned, embedded_file, report_sections, report_variable

    snakemake(default_run, "--report", "results/report.html", "--configfile", "config/ci.yaml")
    page = (default_run / "results/report.html").read_text(encoding="utf-8")
    sections = report_sections(report_variable(page, "results"))
    written = {("table", p.stem): p for p in (default_run / "results/tables").glob("*.csv")} | \
        {("figure", p.stem): p for p in (default_run / "figures").glob("*.png")}
    assert {name for kind, name in written if kind == "table"} == set(TABLE_NAMES)
    assert set(sections) == set(written)
    assert_captioned(sections)
    for key, result in sections.items():
        assert embedded_file(result) == written[key].read_bytes(), key
    assert b"RM held-out accuracy" in embedded_file(sections["table", "beta_sweep"])
