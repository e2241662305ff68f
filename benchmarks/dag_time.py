"""Wall time of the whole embedded-default DAG from a fresh clone: `make run` with nothing built.

Usage: python benchmarks/dag_time.py [--out benchmarks/results/dag_time.txt]
       python benchmarks/dag_time.py --configfile config/study.yaml --world-seed 1 --keep ../study-seed1 \
           --out benchmarks/results/study_time_seed1.txt

With --configfile the clone runs `snakemake --profile profiles/local` with those config files after
config/config.yaml (and a world seed, if given) instead of `make run`; --keep makes the clone and its
run in that directory (made by the clone, kept afterwards, finished or not), for
`docs/update_study.py --run DIR`.

Clones HEAD into a temporary directory, points its `.venv` at this checkout's (the environment is
built once per machine, about 3 minutes, and is not part of the DAG; `make -o` keeps make from
reinstalling it), puts the clone's own package first on PYTHONPATH, times `make run` there, and
prints the per-rule job seconds from the clone's Snakemake benchmark files. Run it on an otherwise
idle machine: every job competes for the same cores.
"""

from __future__ import annotations

import argparse
import collections
import csv
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stamp import machine_text  # benchmarks/ is the script's directory, first on sys.path

REPO = Path(__file__).resolve().parents[1]


def rule_seconds(results: Path) -> dict[str, tuple[float, int]]:
    totals: dict[str, list[float]] = collections.defaultdict(list)
    for path in (results / "benchmarks").rglob("*.tsv"):
        with open(path, newline="") as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        totals[path.relative_to(results / "benchmarks").parts[0].removesuffix(".tsv")].append(float(row["s"]))
    return {rule: (sum(v), len(v)) for rule, v in sorted(totals.items(), key=lambda kv: -sum(kv[1]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/dag_time.txt")
    parser.add_argument("--configfile", nargs="+", default=[], help="config files after config/config.yaml")
    parser.add_argument("--world-seed", type=int, default=None, help="world.seed (with --configfile)")
    parser.add_argument("--keep", default=None,
                        help="clone into this new directory and keep it (finished or not: a failed run resumes there)")
    args = parser.parse_args()
    if args.world_seed is not None and not args.configfile:
        parser.error("--world-seed needs --configfile")
    if not (REPO / ".venv/.installed").is_file():
        raise SystemExit("no built environment: run `make env` first")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    if args.keep and Path(args.keep).exists():
        raise SystemExit(f"--keep {args.keep}: already exists")
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory()) as tmp:
        clone = Path(tmp).resolve() if args.keep else Path(tmp) / "gemsft"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        os.symlink(REPO / ".venv", clone / ".venv")
        command, what = ["make", "-o", ".venv/.installed", "run"], "make run"
        if args.configfile:
            configs = ["config/config.yaml", *args.configfile]
            if args.world_seed is not None:
                # a file, not --config world=...: --config would give the seed as a string
                (clone / "world-seed.yaml").write_text(f"world:\n  seed: {args.world_seed}\n")
                configs.append("world-seed.yaml")
            command = [str(REPO / ".venv/bin/snakemake"), "--cores", "all", "--profile", "profiles/local",
                       "--configfile", *configs]
            what = "snakemake --configfile " + " ".join(configs)
        start = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(clone / "workflow")}
        proc = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{what} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        per_rule = rule_seconds(clone / "results")
    lines = [f"{what} from a fresh clone of {commit} on {os.cpu_count()} CPUs: {seconds:.1f} s ({seconds / 60:.2f} min)",
             "job seconds per rule (benchmark files):"]
    lines += [f"  {rule:22s} {total:7.1f} s over {n} jobs" for rule, (total, n) in per_rule.items()]
    lines.append(machine_text())
    text = "\n".join(lines) + "\n"
    print(text, end="")
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
