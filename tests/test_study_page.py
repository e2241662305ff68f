"""docs/update_study.py and the modules it wires (gemsft.report.study_runs, study_page, calibration,
doc_pages) on study runs constructed in tmp_path: the scoreboard with a verdict column per world seed
and its flips, the counts, the calibration targets met or not, the README's marked line, and a
one-line error naming the file for every missing or malformed input."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gemsft.report import calibration, study_page
from gemsft.report.claims import CLAIMS, CLAIMS_COLUMNS
from gemsft.report.doc_pages import DocInputError, markers, replace_marked
from gemsft.report.study_runs import read_run
from gemsft.report.summary import SUMMARY_COLUMNS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "docs/update_study.py"
PNG = REPO / "docs/fig7a_bon_scaling.png"  # any real image stands in for a forest plot
START, END = markers(study_page.README_MARK)


def load_script():
    spec = importlib.util.spec_from_file_location("update_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


update_study = load_script()


def claim_rows(verdicts: dict[str, str], model: str = "tiny") -> list[dict]:
    """Every claim of the paper, "supported" with difference +2.0 [+0.5, +3.5] unless `verdicts` says
    otherwise; an untestable claim has no numbers and a reason."""
    rows = []
    for c in CLAIMS:
        verdict = verdicts.get(c.id, "supported")
        numbers = dict(value_a=12.0, value_b=10.0, difference=2.0, ci_low=0.5, ci_high=3.5)
        if verdict == "untestable":
            numbers = dict.fromkeys(numbers, "")
        rows.append({"id": c.id, "model": model, "claim": c.description, "task": c.task, "metric": c.metric,
                     "k": "" if c.k is None else c.k, "arm_a": "GEM (log-sigmoid, β=0.7)", "arm_b": "CE",
                     "direction": c.direction, **numbers, "n_items": 40, "n_seeds": 1, "verdict": verdict,
                     "reason": "both at the ceiling | 100%" if verdict == "untestable" else ""})
    return rows


def summary_row(objective, task, metric, k, value, low=math.nan, high=math.nan):
    return {"model": "tiny", "objective": objective, "beta": "na", "task": task, "metric": metric, "k": k,
            "value": value, "ci_low": low, "ci_high": high, "n_prompts": 40, "n_seeds": 1}


def calibration_rows(ce_pass1=35.0, ce_pass100=90.0, ce_greedy=50.0, base_acc=75.0, ce_tax=15.0):
    """A summary with every calibration cell but the pre-trained model's math (not evaluated), and a
    tax on acc_norm that no target reads."""
    return [summary_row("ce", "code", "pass_at_k", 1, ce_pass1, ce_pass1 - 5, ce_pass1 + 4),
            summary_row("ce", "code", "pass_at_k", 100, ce_pass100),
            summary_row("ce", "math", "greedy_accuracy", None, ce_greedy),
            summary_row("base", "knowledge", "acc", None, base_acc),
            summary_row("ce", "knowledge", "alignment_tax_acc", None, ce_tax, ce_tax - 2, ce_tax + 3),
            summary_row("ce", "knowledge", "alignment_tax_acc_norm", None, 40.0)]


def metrics_rows(ce_greedy_by_seed=(50.0, 45.0, 55.0)) -> list[dict]:
    """results/metrics.csv's rows the per-seed calibration target reads: CE's greedy math accuracy of
    each training seed (seeds listed out of order, as a table need not sort them), and a row of
    another metric."""
    seeds = [1236, 1234, 1235][:len(ce_greedy_by_seed)]
    order = sorted(range(len(seeds)), key=lambda i: seeds[i])
    rows = [{"model": "tiny", "objective": "ce", "beta": "na", "seed": seeds[i], "task": "math",
             "metric": "greedy_accuracy", "k": "", "value": ce_greedy_by_seed[order.index(i)]}
            for i in range(len(seeds))]
    return rows + [{"model": "tiny", "objective": "ce", "beta": "na", "seed": 1234, "task": "math",
                    "metric": "pass_rate", "k": "", "value": 1.0}]


def make_run(root: Path, seed: int, verdicts: dict[str, str] | None = None, summary: list[dict] | None = None,
             dirty: bool = False, metrics: list[dict] | None = None) -> Path:
    """A finished study run's directory as the DAG leaves it, with only what the page reads."""
    run = root / f"study-{seed}"
    (run / "results/data").mkdir(parents=True)
    (run / "results/tables").mkdir()
    (run / "figures").mkdir()
    (run / "results/data/world.json").write_text(json.dumps({"config": {"seed": seed}, "counts": {}}))
    pd.DataFrame(claim_rows(verdicts or {}), columns=CLAIMS_COLUMNS).to_csv(run / "results/claims.csv", index=False)
    pd.DataFrame(summary or calibration_rows(), columns=SUMMARY_COLUMNS).to_csv(run / "results/summary.csv",
                                                                               index=False)
    pd.DataFrame(metrics or metrics_rows()).to_csv(run / "results/metrics.csv", index=False)
    provenance = {"config_hash": f"hash{seed}", "git_commit": "0123456789abcdef", "git_dirty": dirty}
    (run / "results/tables/claims.provenance.json").write_text(json.dumps(provenance))
    shutil.copyfile(PNG, run / "figures/claims_forest.png")
    return run


@pytest.fixture
def readme(tmp_path) -> Path:
    path = tmp_path / "README.md"
    path.write_text(f"# project\n\nBefore.\n\n{START}placeholder{END}\n\nAfter.\n")
    return path


def write_page(tmp_path, readme, runs, times=()) -> str:
    docs = tmp_path / "docs"
    update_study.main([*(a for r in runs for a in ("--run", str(r))), *(a for t in times for a in ("--time", str(t))),
                       "--docs", str(docs), "--readme", str(readme)])
    return (docs / "study.md").read_text(encoding="utf-8")


def section(page: str, title: str) -> str:
    return page.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def table_row(text: str, first_cell: str) -> list[str]:
    """The cells of the Markdown table row that starts with `first_cell`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


# --------------------------------------------------------------------------- the page


def test_two_seeds_give_a_verdict_column_each_and_flag_the_flips(tmp_path, readme):
    one = make_run(tmp_path, 1, {"math_greedy": "contradicted", "pass_at_100": "untestable"})
    two = make_run(tmp_path, 2, {"math_greedy": "inconclusive", "pass_at_100": "untestable",
                                 "alignment_tax": "contradicted"})
    page = write_page(tmp_path, readme, [two, one])  # given out of order: columns go by seed
    board = section(page, "Scoreboard")
    header = next(line for line in board.splitlines() if line.startswith("| claim"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["claim", "world seed 1", "world seed 2",
                                                                "across seeds"]
    greedy = table_row(board, "GEM beats CE in greedy accuracy (`math_greedy`)")
    assert greedy[1:] == ["contradicted: +2.0 [+0.5, +3.5]", "inconclusive: +2.0 [+0.5, +3.5]", "flips"]
    tax = table_row(board, "GEM has a lower alignment tax than CE (`alignment_tax`)")
    assert tax[1].startswith("supported") and tax[2].startswith("contradicted") and tax[3] == "flips"
    # Entropy is in nats: two decimals; the reason's "|" does not end its cell.
    entropy = table_row(board, "GEM has higher entropy than CE (`entropy`)")
    assert entropy[1:] == ["supported: +2.00 [+0.50, +3.50]"] * 2 + ["same"]
    untestable = table_row(board, "GEM has higher pass@100 than CE (`pass_at_100`)")
    assert untestable[1:] == [r"untestable: both at the ceiling \| 100%"] * 2 + ["same"]
    assert "- World seed 1: 11 of 13 claims supported, 1 contradicted, 0 inconclusive, 1 untestable." in board
    assert "- World seed 2: 10 of 13 claims supported, 1 contradicted, 1 inconclusive, 1 untestable." in board
    assert "- 2 of 13 claims flip between the world seeds." in board
    one_flip = write_page(tmp_path, readme, [one, make_run(tmp_path, 3, {"pass_at_100": "untestable"})])
    assert "- 1 of 13 claims flips between the world seeds." in section(one_flip, "Scoreboard")
    # Each seed's forest plot is copied beside the page and shown.
    for seed in (1, 2):
        assert (tmp_path / "docs" / study_page.forest_name(seed)).read_bytes() == PNG.read_bytes()
        assert f"]({study_page.forest_name(seed)})" in board


def test_readme_line_gives_each_seed_counts_and_the_flips(tmp_path, readme):
    runs = [make_run(tmp_path, 1, {"math_greedy": "contradicted"}), make_run(tmp_path, 2)]
    write_page(tmp_path, readme, runs)
    text = readme.read_text()
    line = text.split(START, 1)[1].split(END, 1)[0]
    assert line == ("Under the study (two world seeds): world seed 1: 12 of 13 claims supported, 1 contradicted, "
                    "0 inconclusive, 0 untestable; world seed 2: 13 of 13 claims supported, 0 contradicted, "
                    "0 inconclusive, 0 untestable; 1 claim flips between them: see [docs/study.md](docs/study.md).")
    assert text.startswith("# project\n\nBefore.\n\n") and text.endswith(f"{END}\n\nAfter.\n")
    # Run again: the markers are kept and the line replaced, not appended.
    write_page(tmp_path, readme, runs)
    assert readme.read_text() == text


def test_readme_line_says_the_counts_once_when_the_seeds_agree(tmp_path, readme):
    # Two claims swap verdicts: the same counts, yet both flip.
    runs = [make_run(tmp_path, 1, {"math_greedy": "contradicted"}),
            make_run(tmp_path, 2, {"math_pass": "contradicted"})]
    write_page(tmp_path, readme, runs)
    line = readme.read_text().split(START, 1)[1].split(END, 1)[0]
    assert line == ("12 of 13 claims supported, 1 contradicted, 0 inconclusive, 0 untestable under the study "
                    "(two world seeds; 2 claims flip between them): see [docs/study.md](docs/study.md).")


def test_one_seed_has_no_flip_column(tmp_path, readme):
    page = write_page(tmp_path, readme, [make_run(tmp_path, 7)])
    assert "across seeds" not in page and "flip" not in section(page, "Scoreboard")
    assert page.startswith("# The study: the paper's claims under one world seed\n")


def test_calibration_marks_each_target_met_not_met_or_not_measured(tmp_path, readme):
    one = make_run(tmp_path, 1)  # CE's tax 15: on the bound, met
    two = make_run(tmp_path, 2, summary=calibration_rows(ce_pass1=5.0, ce_pass100=97.0, base_acc=69.9, ce_tax=0.5))
    table = section(write_page(tmp_path, readme, [one, two]), "Calibration")
    assert table_row(table, "code: CE pass@1")[1:] == ["in [10, 70]", "35.0 ± 5.0: met", "5.0 ± 5.0: not met"]
    assert table_row(table, "code: CE pass@100")[1:] == ["≤ 95", "90.0: met", "97.0: not met"]
    assert table_row(table, "math: pre-trained greedy accuracy")[1:] == ["in [20, 80]", "not measured", "not measured"]
    assert table_row(table, "math: CE greedy accuracy")[1:] == ["in [20, 80]", "50.0: met", "50.0: met"]
    assert table_row(table, "math: CE greedy accuracy, each training seed")[1:] == [
        "in [20, 80]", "50.0 / 45.0 / 55.0: met", "50.0 / 45.0 / 55.0: met"]
    assert table_row(table, "knowledge: pre-trained accuracy")[1:] == ["≥ 70", "75.0: met", "69.9: not met"]
    assert table_row(table, "knowledge: CE alignment tax (accuracy)")[1:] == ["in [1, 15]", "15.0 ± 3.0: met",
                                                                               "0.5 ± 3.0: not met"]


def test_per_seed_target_fails_on_one_lost_seed_though_the_mean_is_in_range(tmp_path, readme):
    # World seed 1's third calibration: CE's three seeds at 14, 9 and 66, mean 29.7 (in range).
    lost = make_run(tmp_path, 1, summary=calibration_rows(ce_greedy=29.7), metrics=metrics_rows((14.0, 9.0, 66.0)))
    edge = make_run(tmp_path, 2, metrics=metrics_rows((20.0, 80.0)))
    table = section(write_page(tmp_path, readme, [lost, edge]), "Calibration")
    assert table_row(table, "math: CE greedy accuracy")[2] == "29.7: met"
    assert table_row(table, "math: CE greedy accuracy, each training seed")[2:] == [
        "14.0 / 9.0 / 66.0: not met", "20.0 / 80.0: met"]


def test_per_seed_target_without_ce_seeds_is_not_measured():
    summary = pd.DataFrame(calibration_rows(), columns=SUMMARY_COLUMNS)
    target = next(t for t in calibration.TARGETS if t.per_seed)
    other = pd.DataFrame([{**row, "objective": "gem"} for row in metrics_rows()])
    for metrics in (None, other):
        row = calibration.check(summary, [target], metrics=metrics).iloc[0]
        assert (row["measured"], row["status"]) == ("", "not measured")


def test_per_seed_target_reads_the_beta_free_run_and_rejects_a_seed_given_twice():
    target = next(t for t in calibration.TARGETS if t.per_seed)
    rows = metrics_rows((30.0, 40.0, 50.0))
    # A run of the same name with a beta (an override giving CE one) is another run, not CE's.
    with_beta = rows + [{**rows[0], "beta": "0.7", "value": 99.0}]
    assert calibration.seed_values(pd.DataFrame(with_beta), "tiny", target) == [30.0, 40.0, 50.0]
    # Two metrics tables concatenated: the seed's value would be ambiguous.
    with pytest.raises(ValueError, match=r"several rows for training seed 1236"):
        calibration.seed_values(pd.DataFrame(rows + [rows[0]]), "tiny", target)


@pytest.mark.parametrize("value, expected", [(10.0, "met"), (70.0, "met"), (9.99, "not met"), (70.01, "not met"),
                                             (math.nan, "not measured"), (None, "not measured")])
def test_calibration_bounds_are_inclusive(value, expected):
    target = calibration.Target("x", "ce", "code", "pass_at_k", 1, 10, 70)
    assert calibration.status(value, target) == expected


def test_runs_section_gives_seed_commit_and_run_time(tmp_path, readme):
    timed = tmp_path / "dag_time.txt"
    timed.write_text("make run from a fresh clone of e734597 on 2 CPUs: 424.3 s (7.07 min)\njob seconds per rule:\n"
                     "machine: AMD EPYC (family 25, model 17); torch 2.13.0+cpu, CPU capability AVX512\n")
    pinned = make_run(tmp_path, 1, dirty=True)
    (pinned / "results/base").mkdir()
    (pinned / "results/base/tiny.metrics.json").write_text(json.dumps({"threads": 1}))
    page = write_page(tmp_path, readme, [pinned, make_run(tmp_path, 2)], times=[timed])
    runs = section(page, "Runs")
    assert table_row(runs, "1")[1:] == ["`0123456789 with uncommitted changes`", "`hash1`", "7.1 min on 2 CPUs", "1",
                                        "AMD EPYC (family 25, model 17); torch 2.13.0+cpu, CPU capability AVX512"]
    assert table_row(runs, "2")[1:] == ["`0123456789`", "`hash2`", "not recorded", "not recorded", "not recorded"]


def test_commit_comes_from_any_table_when_the_scoreboard_has_no_provenance(tmp_path):
    run = make_run(tmp_path, 1)
    (run / "results/tables/claims.provenance.json").rename(run / "results/tables/diversity.provenance.json")
    assert read_run(run).commit == "0123456789"


def test_script_runs_from_the_command_line(tmp_path, readme):
    runs = [make_run(tmp_path, 1), make_run(tmp_path, 2)]
    result = subprocess.run([sys.executable, str(SCRIPT), "--run", str(runs[0]), "--run", str(runs[1]),
                             "--docs", str(tmp_path / "docs"), "--readme", str(readme)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "docs/study.md").is_file() and "13 of 13 claims supported" in readme.read_text()


# --------------------------------------------------------------------------- bad input


def error_of(argv) -> str:
    with pytest.raises(SystemExit) as caught:
        update_study.main(argv)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("missing", ["results/claims.csv", "results/summary.csv", "results/metrics.csv",
                                     "results/data/world.json",
                                     "figures/claims_forest.png", "results/tables/claims.provenance.json"])
def test_a_missing_input_is_one_line_naming_it(tmp_path, readme, missing):
    runs = [make_run(tmp_path, 1), make_run(tmp_path, 2)]
    (runs[1] / missing).unlink()
    message = error_of(["--run", str(runs[0]), "--run", str(runs[1]), "--docs", str(tmp_path / "docs"),
                        "--readme", str(readme)])
    assert str(runs[1] / missing) in message
    # Nothing was written: the README keeps its placeholder.
    assert not (tmp_path / "docs/study.md").exists() and "placeholder" in readme.read_text()


def rewrite(path: str, edit):
    def apply(run: Path):
        (run / path).write_text(edit((run / path).read_text()))
    return apply


@pytest.mark.parametrize("break_it, file, fragment", [
    (rewrite("results/claims.csv", lambda t: t.replace(",supported,", ",maybe,", 1)), "results/claims.csv",
     "verdict 'maybe' is not one of"),
    (rewrite("results/claims.csv", lambda t: "id,model\nentropy,tiny\n"), "results/claims.csv",
     "lacks column(s) claim, task"),
    (rewrite("results/claims.csv", lambda t: ",".join(CLAIMS_COLUMNS) + "\n"), "results/claims.csv", "has no claims"),
    (rewrite("results/claims.csv", lambda t: t + t.split("\n", 2)[1] + "\n"), "results/claims.csv",
     "has claim 'entropy' of model 'tiny' twice"),
    (rewrite("results/data/world.json", lambda t: '{"config": {}}'), "results/data/world.json",
     "has no integer config.seed"),
    (rewrite("results/data/world.json", lambda t: "{not json"), "results/data/world.json", "is not JSON"),
    (rewrite("results/summary.csv", lambda t: "model,objective\n"), "results/summary.csv", "lacks column(s) beta"),
    (rewrite("results/metrics.csv", lambda t: "model,objective,seed\n"), "results/metrics.csv",
     "lacks column(s) beta, task, metric, k, value"),
    (rewrite("results/metrics.csv", lambda t: t.replace(",1234,", ",first,", 1)), "results/metrics.csv",
     "seed is not a number"),
    (rewrite("results/summary.csv", lambda t: t + t.split("\n", 2)[1] + "\n"), "results/summary.csv",
     "summary has two rows"),
])
def test_a_malformed_input_is_one_line_naming_it(tmp_path, readme, break_it, file, fragment):
    run = make_run(tmp_path, 1)
    break_it(run)
    message = error_of(["--run", str(run), "--docs", str(tmp_path / "docs"), "--readme", str(readme)])
    assert str(run / file) in message and fragment in message, message


def test_two_runs_of_one_seed_and_a_bad_time_file_are_errors(tmp_path, readme):
    one, other = make_run(tmp_path, 1), make_run(tmp_path / "elsewhere", 1)
    docs = ["--docs", str(tmp_path / "docs"), "--readme", str(readme)]
    assert "two runs have world seed 1" in error_of(["--run", str(one), "--run", str(other), *docs])
    timed = tmp_path / "time.txt"
    timed.write_text("it took a while\n")
    assert f"{timed}: its first line gives no wall time" in error_of(["--run", str(one), "--time", str(timed), *docs])
    assert "2 --time files for 1 --run" in error_of(["--run", str(one), "--time", str(timed), "--time", str(timed),
                                                      *docs])
    assert f"{tmp_path / 'nope.txt'} is missing" in error_of(["--run", str(one), "--time", str(tmp_path / "nope.txt"),
                                                              *docs])


def test_readme_without_markers_is_an_error_naming_it(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# project\n")
    message = error_of(["--run", str(make_run(tmp_path, 1)), "--docs", str(tmp_path / "docs"), "--readme", str(readme)])
    assert message == f"update_study: {readme} needs exactly one {START} followed by one {END}"


@pytest.mark.parametrize("text", ["no markers", f"{END} {START}", f"{START}{START}{END}"])
def test_replace_marked_needs_one_ordered_pair(text):
    with pytest.raises(DocInputError, match="needs exactly one"):
        replace_marked(text, study_page.README_MARK, "new")


def test_detectable_difference_is_2_8_standard_errors():
    """A 95% interval of +-1.96 (one standard error) detects (1.959964 + 0.841621) = 2.80 with 80% power
    at the 5% level, the normal-approximation power calculation."""
    from scipy.stats import norm

    se = 1.7
    expected = (norm.ppf(0.975) + norm.ppf(0.80)) * se
    assert study_page.detectable_difference(-1.959964 * se + 4, 1.959964 * se + 4) == pytest.approx(expected, rel=1e-6)


def test_power_section_gives_each_claims_detectable_difference_per_seed(tmp_path, readme):
    one = make_run(tmp_path, 1, {"pass_at_100": "untestable"})
    page = write_page(tmp_path, readme, [one])
    power = section(page, "Power")
    greedy = table_row(power, "`math_greedy`")
    # Interval [+0.5, +3.5]: standard error 3 / 3.92, detectable 2.80 x that = 2.1 (points, one decimal).
    assert greedy[1:] == ["greedy_accuracy", "40 x 1", "2.1"]
    assert table_row(power, "`entropy`")[-1] == "2.14"  # nats: two decimals
    assert table_row(power, "`pass_at_100`")[-1] == "—"  # no interval, nothing to power


def test_data_to_decide_is_the_square_of_the_interval_side_over_the_difference():
    """Were the difference true and the interval to narrow as 1/sqrt(data), 16x the data turns
    +1 [-3, +5] (side facing 0: 4) into +1 +- 1: just decisive; a negative difference uses the upper
    side; a difference of 0 is never decided."""
    assert study_page.data_to_decide(1.0, -3.0, 5.0) == pytest.approx(16.0)
    assert study_page.data_to_decide(-2.0, -9.0, 1.0) == pytest.approx(2.25)
    assert study_page.data_to_decide(0.0, -1.0, 1.0) == math.inf
    # Check the scaling itself: the side shrinks by sqrt(16) to exactly the difference.
    assert (1.0 - (-3.0)) / math.sqrt(study_page.data_to_decide(1.0, -3.0, 5.0)) == pytest.approx(1.0)


def test_power_section_lists_what_each_inconclusive_claim_would_take(tmp_path, readme):
    one = make_run(tmp_path, 1, {"math_greedy": "inconclusive", "alignment_tax": "inconclusive"})
    claims = pd.read_csv(one / "results/claims.csv")
    claims.loc[claims.id == "math_greedy", ["difference", "ci_low", "ci_high"]] = [1.0, -3.0, 5.0]
    claims.loc[claims.id == "alignment_tax", ["difference", "ci_low", "ci_high"]] = [-0.5, -4.0, 3.5]
    claims.to_csv(one / "results/claims.csv", index=False)
    power = section(write_page(tmp_path, readme, [one]), "Power")
    undecided = power.split("A planning figure", 1)[1]
    assert table_row(undecided, "`math_greedy`")[1:] == ["+1.0 [-3.0, +5.0]: 16x"]
    assert table_row(undecided, "`alignment_tax`")[1:] == ["-0.5 [-4.0, +3.5]: 64x"]  # upper side 4.0: (4 / 0.5)^2
    assert "| `entropy`" not in undecided  # decisive claims have no row there


# --------------------------------------------------------------------------- benchmarks/calibration.py


def load_calibration_script():
    spec = importlib.util.spec_from_file_location("calibration_script", REPO / "benchmarks/calibration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_calibration_script_gives_a_column_per_world_seed(tmp_path, capsys):
    """The calibration runs (base and CE only: no claims) of two world seeds, in one table."""
    easy = make_run(tmp_path, 1, summary=calibration_rows(ce_pass1=85.0, ce_pass100=98.8))
    fine = make_run(tmp_path, 0)
    (easy / "results/claims.csv").unlink()
    out = tmp_path / "calibration.txt"
    load_calibration_script().main(["--run", str(easy), "--run", str(fine), "--out", str(out)])
    text = out.read_text(encoding="utf-8")
    assert text == capsys.readouterr().out
    assert text.startswith("Calibration targets (study-1, study-0):\n")
    assert table_row(text, "code: CE pass@1")[1:] == ["in [10, 70]", "35.0 ± 5.0: met", "85.0 ± 5.0: not met"]
    assert table_row(text, "code: CE pass@100")[2:] == ["90.0: met", "98.8: not met"]
    assert table_row(text, "math: pre-trained greedy accuracy")[2:] == ["not measured"] * 2


def test_calibration_script_names_the_missing_file(tmp_path):
    run = make_run(tmp_path, 0)
    (run / "results/summary.csv").unlink()
    with pytest.raises(SystemExit) as err:
        load_calibration_script().main(["--run", str(run)])
    assert str(err.value).startswith("calibration: ") and "results/summary.csv" in str(err.value)
    assert "\n" not in str(err.value)
