"""docs/update_objectives.py on a constructed run directory of config/objectives.yaml: the section of
docs/objectives.md between its markers is written (verdicts, tables, figures copied, commit and run
time) and the rest of the page stays; a missing or malformed input is a one-line error naming the file,
and then nothing is written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gemsft.report.comparison import compare_objectives, write_csv

from test_comparison import scenario, same

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- comparison:start -->", "<!-- comparison:end -->"
PAGE = f"# Objectives\n\nText before, kept.\n\n{START}placeholder: not run yet{END}\n\nText after, kept.\n"


def load_script():
    spec = importlib.util.spec_from_file_location("update_objectives", REPO / "docs/update_objectives.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def update():
    return load_script()


def finished_run(root: Path, update) -> Path:
    """What the generator reads of a finished run: results/comparison.csv (two objectives against CE, one
    supported, one contradicted), the two figures and the frontier's provenance."""
    stages = scenario(same, lambda v, i, seed: v + 5, objective="dft")
    worse = [s for s in scenario(lambda v, i, seed: v - 20, lambda v, i, seed: v + 5, objective="ts2")
             if s["run"]["objective"] == "ts2"]
    (root / "results").mkdir(parents=True)
    write_csv(compare_objectives(stages + worse, "world", n_resamples=200), root / "results/comparison.csv")
    (root / "figures").mkdir()
    for name in update.FIGURES:
        (root / f"figures/{name}.png").write_bytes(b"png " + name.encode())
    (root / "figures/objectives_frontier.provenance.json").write_text(
        '{"config_hash": "c0ffee", "git_commit": "0123456789abcdef", "git_dirty": false}')
    return root


def docs_dir(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "objectives.md").write_text(PAGE, encoding="utf-8")
    return docs


def test_the_section_is_written_between_the_markers(tmp_path, update):
    run, docs = finished_run(tmp_path / "run", update), docs_dir(tmp_path)
    time_file = tmp_path / "time.txt"
    time_file.write_text("snakemake --configfile config/config.yaml config/objectives.yaml from a fresh clone of "
                         "abc on 2 CPUs: 3300.0 s (55.00 min)\njob seconds per rule ...\n")
    page = update.write(run, time_file, docs, docs / "objectives.md")
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Objectives\n\nText before, kept.\n\n" + START)
    assert text.endswith(END + "\n\nText after, kept.\n")
    assert text.count(START) == 1 and text.count(END) == 1 and "placeholder" not in text
    inside = text.split(START)[1].split(END)[0]
    assert "commit `0123456789`, config hash `c0ffee`, run time 55.0 min on 2 CPUs" in inside
    assert "- 1 of 2 objectives supported, 1 contradicted, 0 inconclusive, 0 untestable." in inside
    verdicts = {line.split("|")[1].strip(): line for line in inside.splitlines() if line.startswith("| DFT")
                or line.startswith("| TS²")}
    assert "| supported " in verdicts["DFT"] and "| contradicted " in verdicts["TS²"]
    # The tables: CE's own values first, then each objective's difference with its interval.
    assert "| CE (its own value) " in inside and "| DFT − CE " in inside and "| TS² − CE " in inside
    assert "chat oracle win rate, BoN@32" in inside and "chat Sentence-BERT diversity" in inside
    assert "code pass@100" in inside and "knowledge alignment tax (acc)" in inside
    ts2 = next(line for line in inside.splitlines() if line.startswith("| TS² − CE"))
    assert "-20.0 [-20.0, -20.0]" in ts2  # 20 points worse on every prompt
    for name in update.FIGURES:
        assert (docs / f"{name}.png").read_bytes() == b"png " + name.encode() and f"]({name}.png)" in inside
    # Run again: the markers are found again and the page is the same.
    assert update.write(run, time_file, docs, docs / "objectives.md").read_text(encoding="utf-8") == text


def test_without_a_time_file_the_run_time_is_not_recorded(tmp_path, update):
    run, docs = finished_run(tmp_path / "run", update), docs_dir(tmp_path)
    text = update.write(run, None, docs, docs / "objectives.md").read_text(encoding="utf-8")
    assert "run time not recorded" in text


def break_input(run: Path, docs: Path, breakage: str) -> tuple[list[str], str]:
    """Break one input; the arguments that reach it and the file the error must name."""
    args = ["--run", str(run), "--docs", str(docs)]
    if breakage == "no comparison":
        (run / "results/comparison.csv").unlink()
        return args, "comparison.csv"
    if breakage == "malformed comparison":
        path = run / "results/comparison.csv"
        path.write_text(path.read_text().replace(",supported,", ",proven,"))
        return args, "comparison.csv"
    if breakage == "empty comparison":
        (run / "results/comparison.csv").write_text("")
        return args, "comparison.csv"
    if breakage == "no figure":
        (run / "figures/objectives_pass_at_k.png").unlink()
        return args, "objectives_pass_at_k.png"
    if breakage == "no provenance":
        (run / "figures/objectives_frontier.provenance.json").unlink()
        return args, "objectives_frontier.provenance.json"
    if breakage == "bad time file":
        (run / "time.txt").write_text("no wall time here\n")
        return [*args, "--time", str(run / "time.txt")], "time.txt"
    if breakage == "missing time file":
        return [*args, "--time", str(run / "absent.txt")], "absent.txt"
    if breakage == "no markers":
        (docs / "objectives.md").write_text("# Objectives\n\nno markers\n")
        return args, "objectives.md"
    raise AssertionError(breakage)


@pytest.mark.parametrize("breakage", ["no comparison", "malformed comparison", "empty comparison", "no figure",
                                      "no provenance", "bad time file", "missing time file", "no markers"])
def test_a_missing_or_malformed_input_is_one_line_and_writes_nothing(tmp_path, update, breakage, capsys):
    run, docs = finished_run(tmp_path / "run", update), docs_dir(tmp_path)
    args, named = break_input(run, docs, breakage)
    before = (docs / "objectives.md").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        update.main(args)
    message = str(exit_info.value.code)
    assert message.startswith("update_objectives: ") and "\n" not in message and named in message, message
    assert (docs / "objectives.md").read_bytes() == before
    assert sorted(p.name for p in docs.iterdir()) == ["objectives.md"]  # no figure copied either


def test_the_repository_page_has_its_markers_and_placeholder():
    text = (REPO / "docs/objectives.md").read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1 and text.index(START) < text.index(END)
    assert text.rstrip().endswith(END)


def test_the_counts_add_up(tmp_path, update):
    run = finished_run(tmp_path / "run", update)
    df = update.read_run(run).comparison
    counts = update.counts_text(df)
    assert counts == "1 of 2 objectives supported, 1 contradicted, 0 inconclusive, 0 untestable"
    assert np.isfinite(df.loc[df["measure"] == "quality", "difference"]).all()
