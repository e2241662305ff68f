"""The world's calibration targets against finished runs: the base model's and CE's numbers that
must sit away from floor and ceiling for the paper's claims to be decidable on the world.

Usage: python benchmarks/calibration.py --run DIR [--run DIR ...] [--out benchmarks/results/calibration.txt]

Each DIR is a finished run's working directory (its results/summary.csv, results/metrics.csv
and results/data/world.json),
e.g. the calibration run of config/calibration.yaml for one world seed, kept by
`benchmarks/dag_time.py --keep DIR`; the table has a column per world seed. The targets are
`gemsft.report.calibration.TARGETS`; docs/study.md shows the same table for the study's own runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from gemsft.report.study_page import calibration_table, markdown  # noqa: E402
from gemsft.report.study_runs import read_metrics_checked, read_summary_checked, read_world_seed  # noqa: E402


class CalibrationRun(NamedTuple):
    world_seed: int
    summary: pd.DataFrame
    metrics: pd.DataFrame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", required=True,
                        help="a finished run's working directory (repeat it: one per world seed)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    try:
        runs = [CalibrationRun(read_world_seed(run / "results/data/world.json"),
                               read_summary_checked(run / "results/summary.csv"),
                               read_metrics_checked(run / "results/metrics.csv")) for run in args.run]
        table = calibration_table(runs)
    except ValueError as err:  # DocInputError too: one line naming the file
        raise SystemExit(f"calibration: {err}") from None
    names = ", ".join(run.name for run in args.run)
    text = f"Calibration targets ({names}):\n" + markdown(table) + "\n"
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
