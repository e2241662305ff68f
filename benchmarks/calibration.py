"""The world's calibration targets against a finished run: the base model's and CE's numbers that
must sit away from floor and ceiling for the paper's claims to be decidable on the world.

Usage: python benchmarks/calibration.py --run DIR [--out benchmarks/results/calibration.txt]

DIR is a finished run's working directory (its results/summary.csv), e.g. the calibration run of
config/calibration.yaml kept by `benchmarks/dag_time.py --keep DIR`. The targets are
`gemsft.report.calibration.TARGETS`; docs/study.md shows the same table for the study's own runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from gemsft.report import calibration  # noqa: E402
from gemsft.report.study_runs import read_summary_checked, read_world_seed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished run's working directory")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    try:
        summary = read_summary_checked(args.run / "results/summary.csv")
        seed = read_world_seed(args.run / "results/data/world.json")
    except ValueError as err:
        raise SystemExit(f"calibration: {err}") from None
    table = calibration.check(summary)
    text = (f"Calibration targets, world seed {seed} ({args.run.name}):\n"
            + table.to_markdown(index=False) + "\n")
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
