"""Write docs/study.md, the study's page, and the README's line on it, from the study's finished runs.

Usage: .venv/bin/python docs/update_study.py --run DIR [--run DIR ...] [--time FILE ...]
                                             [--docs DIR] [--readme FILE]

Each --run is the working directory of one finished run of the study config (one per world seed). The
i-th --time, when given, is the benchmarks/dag_time.py result of the i-th run; a run without one has its
run time "not recorded". Writes docs/study.md (the claims' scoreboard with a verdict column per world
seed and the flips, the counts, the calibration targets against the measured values, each run's world
seed, commit and run time), copies each run's forest plot into docs/, and rewrites the README's line
between <!-- study:start --> and <!-- study:end -->. docs/pipeline.md says how to run the study.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gemsft.report.doc_pages import DocInputError, copy_figure, replace_marked, require_file
from gemsft.report.study_page import README_MARK, forest_name, ordered, readme_line, study_page
from gemsft.report.study_runs import read_run

REPO = Path(__file__).resolve().parents[1]
PAGE = "study.md"


def write(run_dirs: list[Path], time_files: list[Path], docs: Path, readme: Path) -> Path:
    if len(time_files) > len(run_dirs):
        raise DocInputError(f"{len(time_files)} --time files for {len(run_dirs)} --run directories: "
                            "give at most one per run, in the same order")
    runs = ordered([read_run(d, t) for d, t in zip(run_dirs, [*time_files, *[None] * len(run_dirs)])])
    readme_text = require_file(readme, "give the README to update").read_text(encoding="utf-8")
    # Linked relative to the README's directory, as its other links are.
    link = Path(os.path.relpath(docs / PAGE, readme.parent)).as_posix()
    readme_text = replace_marked(readme_text, README_MARK, readme_line(runs, link), where=str(readme))
    page_text = study_page(runs)
    # Written only once every input has been read: a failed refresh leaves docs/ and the README as they were.
    for run in runs:
        copy_figure(run.forest, docs / forest_name(run.world_seed))
    page = docs / PAGE
    page.write_text(page_text, encoding="utf-8")
    readme.write_text(readme_text, encoding="utf-8")
    return page


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", required=True, metavar="DIR",
                        help="a finished study run's working directory (once per world seed)")
    parser.add_argument("--time", type=Path, action="append", default=[], metavar="FILE",
                        help="the benchmarks/dag_time.py result of the run given in the same position")
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where the page and figures go")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md", help="the README whose study line to update")
    args = parser.parse_args(argv)
    try:
        page = write(args.run, args.time, args.docs, args.readme)
    except ValueError as err:  # DocInputError, and ordered()'s two runs of one seed
        raise SystemExit(f"update_study: {err}") from None
    print(f"{page} written; {args.readme} study line updated")


if __name__ == "__main__":
    main()
