"""How long regenerating a figure takes on a finished run: edit a figure module, re-run the workflow.

Usage: python benchmarks/regenerate_figures.py [--module workflow/gemsft/report/figures/fig7a_bon_scaling.py]
           [--repeats 3] [--out FILE] [-- extra snakemake arguments, e.g. --configfile config/ci.yaml]

Needs a finished run (`make run`). Each repeat edits the module (appends a comment line: Snakemake
ignores a bare `touch`, since it compares checksums of inputs that are newer but unchanged), checks
from a dry run that only report jobs are planned, then times `snakemake --cores all --profile
profiles/local` end to end (DAG building included). Prints each time and the median (to
benchmarks/results/regenerate_figures.txt, ``--out``), then restores the module and brings the run up to
date again (untimed). It works in the checkout it belongs to: run the copy in a finished run's clone
(`benchmarks/dag_time.py --keep DIR`) to time that run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from stamp import commit_stamp  # benchmarks/ is the script's directory, first on sys.path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
REPORT_RULES = {"figure", "table", "all"}
OUT = REPO / "benchmarks" / "results" / "regenerate_figures.txt"


def snakemake(*args: str) -> str:
    proc = subprocess.run([SNAKEMAKE, "--profile", "profiles/local", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def planned_rules(dry_run: str) -> set[str]:
    lines = dry_run.splitlines()
    if not any(line.startswith("Job stats") for line in lines):
        return set()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    rules = set()
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        rules.add(parts[0])
    return rules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", default="workflow/gemsft/report/figures/fig7a_bon_scaling.py")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("extra", nargs="*", help="extra snakemake arguments (after --)")
    args = parser.parse_args()
    if planned_rules(snakemake("-n", "--cores", "1", *args.extra)):
        raise SystemExit("the run is not finished (snakemake -n plans jobs): run `make run` first")
    module = REPO / args.module
    original = module.read_text()
    lines = [f"regenerate_figures: {commit_stamp(REPO)}; snakemake --cores all after editing {args.module}"]
    times = []
    try:
        for repeat in range(args.repeats):
            module.write_text(original + f"# benchmark edit {repeat}\n")
            planned = planned_rules(snakemake("-n", "--cores", "1", *args.extra))
            if not planned or not planned <= REPORT_RULES:
                raise SystemExit(f"editing {args.module} planned {sorted(planned)}, not only report rules")
            start = time.perf_counter()
            snakemake("--cores", "all", *args.extra)
            times.append(time.perf_counter() - start)
            lines.append(f"regenerated after editing {args.module}: {times[-1]:.1f} s "
                         f"(planned: {', '.join(sorted(planned))})")
            print(lines[-1], flush=True)
    finally:
        module.write_text(original)
    snakemake("--cores", "all", *args.extra)
    lines.append(f"median {statistics.median(times):.1f} s over {len(times)} runs "
                 f"(range {min(times):.1f}-{max(times):.1f} s)")
    print(lines[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
