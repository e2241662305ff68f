"""The code stage's cost: every sample's program run, or each distinct program once.

Usage: python benchmarks/code_eval_bench.py --run DIR [--sample FILE] [--out FILE]

A study run (`benchmarks/dag_time.py --keep DIR`) holds 12,900 world code samples per model (129
problems x 100). `gemsft.evaluate.code.evaluate_code` runs each distinct program once
(`run_distinct`) and gives its outcome to every sample that wrote it. Measured side by side on one
model's samples (`--sample`, relative to DIR/results/samples; default: the linear GEM, seed 1234,
a model with many distinct programs), wall clock, 3 s timeout each:

* every program: `gemsft.evaluate.sandbox.run_programs` on all 12,900 programs, as the stage ran them
  before;
* distinct: `run_distinct`, as the stage runs them now.

Both must give every sample the same outcome (passed and status), or the bench fails. Also listed:
the distinct programs of every code sample file of the run, the share the stage now runs.

Writes benchmarks/results/code_eval_bench.txt (`--out`).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from stamp import commit_stamp, machine_text  # benchmarks/ is the script's directory, first on sys.path

from gemsft.evaluate.code import run_distinct, world_program
from gemsft.evaluate.sandbox import run_programs
from gemsft.files import read_jsonl

DEFAULT_SAMPLE = "tiny/gem/beta-0.7/seed-1234/code.jsonl"


def programs_of(results: Path, sample_file: Path) -> list[str]:
    by_id = {r["id"]: r for r in read_jsonl(results / "data" / "eval_code.jsonl")}
    return [world_program(by_id[s["prompt_id"]], s["text"]) for s in read_jsonl(sample_file)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a study run's directory (dag_time.py --keep)")
    parser.add_argument("--sample", default=DEFAULT_SAMPLE, help="code samples, relative to results/samples")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "code_eval_bench.txt"))
    args = parser.parse_args()
    results = Path(args.run) / "results"
    sample_file = results / "samples" / args.sample
    if not sample_file.is_file():
        raise SystemExit(f"code_eval_bench: no samples at {sample_file} (--sample)")

    programs = programs_of(results, sample_file)
    start = time.perf_counter()
    every = run_programs(programs, timeout_s=3.0)
    every_s = time.perf_counter() - start
    start = time.perf_counter()
    distinct = run_distinct(programs, "code", 3.0, None, "strict")
    distinct_s = time.perf_counter() - start
    mismatched = [i for i, (a, b) in enumerate(zip(every, distinct))
                  if (a.passed, a.status) != (b.passed, b.status)]
    if mismatched:
        raise SystemExit(f"code_eval_bench: {len(mismatched)} samples differ between the two ways, "
                         f"the first at row {mismatched[0]} of {sample_file}")

    counts = []
    for path in sorted((results / "samples").rglob("code.jsonl")):
        rows = programs_of(results, path)
        counts.append((str(path.relative_to(results / "samples")), len(rows), len(set(rows))))

    lines = [f"{commit_stamp()}: code stage, every sample's program vs each distinct program once, "
             f"on {os.cpu_count()} CPUs",
             f"samples: results/samples/{args.sample} of the run {Path(args.run).name}",
             f"  every program:    {len(programs):6d} programs  {every_s:7.1f} s",
             f"  distinct, once:   {len(set(programs)):6d} programs  {distinct_s:7.1f} s",
             f"  speed-up: {every_s / distinct_s:.1f}x; outcomes identical for all {len(programs)} samples",
             "distinct programs per code sample file of the run:"]
    lines += [f"  {name:52s} {n:6d} samples {d:5d} distinct ({100 * d / n:.1f}%)" for name, n, d in counts]
    lines.append(machine_text())
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
