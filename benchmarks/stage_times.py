"""Where the DAG's time goes, from Snakemake's per-job `benchmark:` files.

Usage: python benchmarks/stage_times.py [RESULTS_DIR] [--rules pretrain train]

Prints every job's wall time and peak memory, slowest first, and the wall-clock span of the selected
rules (first start to last end; a job's start is its benchmark file's write time minus its duration),
which counts jobs that ran side by side once.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_jobs(results: Path) -> list[dict]:
    jobs = []
    root = results / "benchmarks"
    for path in sorted(root.rglob("*.tsv")):
        with open(path, newline="") as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        seconds = float(row["s"])
        end = path.stat().st_mtime
        jobs.append({"job": str(path.relative_to(root).with_suffix("")), "rule": path.relative_to(root).parts[0],
                     "seconds": seconds, "max_rss_mb": float(row["max_rss"]) if row["max_rss"] != "NA" else None,
                     "start": end - seconds, "end": end})
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default="results", type=Path)
    parser.add_argument("--rules", nargs="*", default=None, help="rules whose wall-clock span is reported")
    args = parser.parse_args()
    jobs = read_jobs(args.results)
    if not jobs:
        raise SystemExit(f"no benchmark files under {args.results / 'benchmarks'}: run the workflow first")
    print(f"{'job':60s} {'wall s':>8s} {'max RSS MB':>11s}")
    for job in sorted(jobs, key=lambda j: -j["seconds"]):
        rss = f"{job['max_rss_mb']:.0f}" if job["max_rss_mb"] is not None else "NA"
        print(f"{job['job']:60s} {job['seconds']:8.1f} {rss:>11s}")
    selected = [j for j in jobs if args.rules is None or j["rule"] in args.rules]
    span = max(j["end"] for j in selected) - min(j["start"] for j in selected)
    label = ", ".join(args.rules) if args.rules else "all rules"
    print(f"\nwall-clock span of {label}: {span:.1f} s ({span / 60:.2f} min); "
          f"job time summed: {sum(j['seconds'] for j in selected):.1f} s over {len(selected)} jobs")


if __name__ == "__main__":
    main()
