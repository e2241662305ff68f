"""Write the objectives comparison into docs/objectives.md, from a finished run of config/objectives.yaml.

Usage: .venv/bin/python docs/update_objectives.py --run DIR [--time FILE] [--docs DIR] [--page FILE]

DIR is the working directory of the finished run; FILE, when given, its benchmarks/dag_time.py result
(without one the run time is "not recorded"). Rewrites what lies between <!-- comparison:start --> and
<!-- comparison:end --> in docs/objectives.md: the verdict on "X is more diverse than CE at no quality
cost" for each objective X, the table of each objective's paired difference from CE on quality,
diversity, pass@k, math and forgetting (the run's results/comparison.csv), the quality-diversity
frontier and the pass@k curves (copied into docs/), and the run's commit and run time. A missing or
malformed input stops it with one line naming the file, before anything is written. docs/pipeline.md
says how to run the comparison.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from gemsft.report.cells import DIGITS, MISSING
from gemsft.report.claims import UNTESTABLE, VERDICTS, format_difference, metric_text
from gemsft.report.comparison import (CLAIM, DIVERSITY, FORGETTING, MARGIN, MATH, PASS_AT_K, QUALITY, VERDICT,
                                      VERDICT_DIVERSITY, load_comparison)
from gemsft.report.doc_pages import (DocInputError, commit_text, copy_figure, input_error, read_json_object,
                                     replace_marked, require_file)
from gemsft.report.study_page import markdown
from gemsft.report.study_runs import read_run_time

REPO = Path(__file__).resolve().parents[1]
MARK = "comparison"  # docs/objectives.md's section between <!-- comparison:start --> and <!-- comparison:end -->
COMPARISON = "results/comparison.csv"
FIGURES = ("objectives_frontier", "objectives_pass_at_k")  # figures/<name>.png, copied to docs/<name>.png
PROVENANCE = "figures/objectives_frontier.provenance.json"  # the commit and config the report was made at
FIGURE_ALT = {"objectives_frontier": "Quality against Sentence-BERT diversity and Vendi score, every objective",
              "objectives_pass_at_k": "pass@k against k, every objective"}


class ComparisonRun(NamedTuple):
    comparison: pd.DataFrame
    figures: dict[str, Path]
    commit: str
    config_hash: str
    run_time: str


def read_comparison(path: Path) -> pd.DataFrame:
    path = require_file(path, "the run did not compare the objectives (report.comparison: true; config/objectives.yaml)")
    try:
        return load_comparison(path)
    except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise input_error(path, err) from None


def read_run(run_dir: Path, time_file: Path | None = None) -> ComparisonRun:
    """Every input of the section, read and checked: nothing is written before this returns."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DocInputError(f"{run_dir} is not a directory (give a finished run of config/objectives.yaml)")
    comparison = read_comparison(run_dir / COMPARISON)
    figures = {name: require_file(run_dir / f"figures/{name}.png", "the run did not draw it") for name in FIGURES}
    provenance = read_json_object(run_dir / PROVENANCE, "the run did not draw the comparison's figures")
    return ComparisonRun(comparison, figures, commit_text(provenance), str(provenance.get("config_hash") or "unknown"),
                         read_run_time(time_file))


# --------------------------------------------------------------------------- the section


def _cell(row) -> str:
    """"+2.5 [+0.8, +4.2]" (X − CE and its 95% interval); an untestable row gives its reason."""
    if row.verdict == UNTESTABLE:
        return f"{UNTESTABLE}: {row.reason}" if row.reason else UNTESTABLE
    return format_difference(row.difference, row.ci_low, row.ci_high, DIGITS.get(row.metric, 1))


def _value(value: float, metric: str) -> str:
    return MISSING if value is None or math.isnan(value) else f"{value:.{DIGITS.get(metric, 1)}f}"


def _column(row) -> tuple:
    return (row.measure, row.task, row.metric, None if math.isnan(row.k) else int(row.k))


def _title(column: tuple) -> str:
    _, task, metric, k = column
    return metric_text(task, metric, k)


def measures_table(df: pd.DataFrame, kinds: tuple[str, ...]) -> pd.DataFrame:
    """One row per objective (and model, when there are several), CE's own values first: a column per
    measure of `kinds`, X − CE with its interval."""
    rows = df[df["measure"].isin(kinds)]
    columns = list(dict.fromkeys(_column(r) for r in rows.itertuples(index=False)))
    several = df["model"].nunique() > 1
    out = []
    for model in dict.fromkeys(df["model"]):
        mine = rows[rows["model"] == model]
        reference = {"model": model} if several else {}
        reference["objective"] = "CE (its own value)"
        for column in columns:
            found = [r for r in mine.itertuples(index=False) if _column(r) == column and not math.isnan(r.value_ce)]
            reference[_title(column)] = _value(found[0].value_ce if found else math.nan, column[2])
        out.append(reference)
        for arm in dict.fromkeys(mine["arm"]):
            line = {"model": model} if several else {}
            line["objective"] = f"{arm} − CE"
            cells = {_column(r): _cell(r) for r in mine[mine["arm"] == arm].itertuples(index=False)}
            line.update({_title(c): cells.get(c, MISSING) for c in columns})
            out.append(line)
    head = ["model"] if several else []
    return pd.DataFrame(out, columns=head + ["objective", *(_title(c) for c in columns)], dtype=object)


def _first_cell(rows: pd.DataFrame) -> str:
    return _cell(next(rows.itertuples(index=False))) if len(rows) else MISSING


def verdict_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per objective: its Sentence-BERT diversity and quality differences, the verdict and why."""
    several = df["model"].nunique() > 1
    out = []
    for r in df[df["measure"] == VERDICT].itertuples(index=False):
        mine = df[(df["model"] == r.model) & (df["arm"] == r.arm)]
        diversity = mine[(mine["measure"] == DIVERSITY) & (mine["metric"] == VERDICT_DIVERSITY)]
        quality = mine[mine["measure"] == QUALITY]
        line = {"model": r.model} if several else {}
        line.update({"objective": r.arm, "Sentence-BERT diversity X − CE": _first_cell(diversity),
                     "quality X − CE": _first_cell(quality), "verdict": r.verdict, "reason": r.reason})
        out.append(line)
    return pd.DataFrame(out, dtype=object)


def counts_text(df: pd.DataFrame) -> str:
    """"2 of 9 objectives supported, 3 contradicted, 4 inconclusive, 0 untestable"."""
    verdicts = df.loc[df["measure"] == VERDICT, "verdict"]
    counts = Counter(verdicts)
    first, *rest = VERDICTS
    return f"{counts[first]} of {len(verdicts)} objectives {first}, " + ", ".join(f"{counts[v]} {v}" for v in rest)


def _quality_text(df: pd.DataFrame) -> str:
    quality = df[df["measure"] == QUALITY]
    if quality.empty:
        return "best-of-32 win rate"
    r = quality.iloc[0]
    return metric_text(r["task"], r["metric"], None if math.isnan(r["k"]) else int(r["k"]))


def section(run: ComparisonRun) -> str:
    """What goes between the markers; the figures are referenced as docs/<name>.png."""
    df = run.comparison
    seeds = df.loc[df["measure"] != VERDICT, "n_seeds"].dropna()
    seeds_text = f"{int(seeds.max())} seed pairs" if len(seeds) else "its seeds"
    quality = _quality_text(df)
    figures = "\n\n".join(f"![{FIGURE_ALT[name]}]({name}.png)" for name in FIGURES)
    return "\n".join([
        "",
        "## Every objective against CE",
        "",
        "<!-- Written by docs/update_objectives.py from a finished run of config/objectives.yaml; edits by hand "
        "between the markers are overwritten. -->",
        "",
        f"A run of `config/objectives.yaml` (commit `{run.commit}`, config hash `{run.config_hash}`, run time "
        f"{run.run_time}) trained every objective with the study's seeds; each objective X other than CE is "
        f"paired with CE seed by seed and item by item ({seeds_text}), and a cell is X − CE with its 95% "
        "paired-bootstrap interval, the claims' statistic (`gemsft.report.comparison`, the run's "
        "`results/comparison.csv`). The tasks are the claims': quality is the "
        f"{quality}; pass@k is on the claims' code task; forgetting is the alignment tax against the "
        "pre-trained model (X − CE > 0: X forgets more).",
        "",
        f"### X is {CLAIM}",
        "",
        f"Supported when the Sentence-BERT diversity difference's interval lies above 0 and the quality "
        f"difference's above −{MARGIN:g} win-rate points, the non-inferiority margin fixed before the run "
        "(`gemsft.report.comparison` says why); contradicted when the diversity interval lies below 0 or the "
        f"quality interval entirely below −{MARGIN:g}; untestable when either could not be judged (missing, or "
        "both runs at the metric's floor or ceiling); inconclusive otherwise.",
        "",
        f"- {counts_text(df)}.",
        "",
        markdown(verdict_table(df)),
        "",
        "### Quality and diversity",
        "",
        markdown(measures_table(df, (QUALITY, DIVERSITY))),
        "",
        "### pass@k, math and forgetting",
        "",
        markdown(measures_table(df, (PASS_AT_K, MATH, FORGETTING))),
        "",
        "### Figures",
        "",
        figures,
        "",
        "Written by `.venv/bin/python docs/update_objectives.py --run DIR [--time FILE]`; "
        "[pipeline.md](pipeline.md#the-objectives-comparison) says how to run the comparison.",
        "",
    ])


def write(run_dir: Path, time_file: Path | None, docs: Path, page: Path) -> Path:
    run = read_run(run_dir, time_file)
    text = require_file(page, "give the page to update").read_text(encoding="utf-8")
    text = replace_marked(text, MARK, section(run), where=str(page))
    # Written only once every input has been read: a failed refresh leaves docs/ as it was.
    for name, source in run.figures.items():
        copy_figure(source, docs / f"{name}.png")
    page.write_text(text, encoding="utf-8")
    return page


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, metavar="DIR",
                        help="the working directory of a finished run of config/objectives.yaml")
    parser.add_argument("--time", type=Path, default=None, metavar="FILE", help="its benchmarks/dag_time.py result")
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where the figures go")
    parser.add_argument("--page", type=Path, default=None, help="the page to update (default: DOCS/objectives.md)")
    args = parser.parse_args(argv)
    page = args.page or args.docs / "objectives.md"
    try:
        write(args.run, args.time, args.docs, page)
    except ValueError as err:  # DocInputError, and the readers' own
        raise SystemExit(f"update_objectives: {err}") from None
    print(f"{page} comparison section written")


if __name__ == "__main__":
    main()
