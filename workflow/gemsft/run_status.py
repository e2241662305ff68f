"""A short status of a Snakemake run for `make run`: Snakemake's output (on stdin) cut to what a user
follows. The job counts, one line per job that starts (its rule and wildcards) and per step done,
errors in full, and at the end where the results and the report are. Snakemake keeps its full log
under .snakemake/log/, and every job its own log under results/logs/.

    snakemake --profile profiles/local 2>&1 | python -m gemsft.run_status
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterable, Iterator

RULE = re.compile(r"^(?:local)?rule (\w+):$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
STAMP = re.compile(r"^\[\w{3} \w{3} +\d+ (\d\d:\d\d:\d\d) \d{4}\]$")  # Snakemake's "[Mon Dec  7 03:03:06 2026]"
STEPS = re.compile(r"^\d+ of \d+ steps \(\d+%\) done$")
LOG = re.compile(r"^Complete log\(s\): (.*)$")
# From the first line of an error on, everything is shown: the user needs all of it.
ERROR = re.compile(r"^(Error in rule|RuleException|WorkflowError|Traceback|MissingInputException|"
                   r"Exiting because|IncompleteFilesException|LockException|Error:|.*Exception\b.*:)")
KEEP = ("Nothing to be done", "Elapsed time:", "Job stats:", "Building DAG of jobs")

OUTPUTS = ("Results: results/metrics.csv (every number), results/tables/ (the paper's tables), figures/, "
           "results/claims.csv (a verdict on each claim).")
REPORT = "HTML report: make report (writes report.html)"


def condense(lines: Iterable[str], clock=lambda: time.strftime("%H:%M:%S")) -> Iterator[str]:
    """The status lines of Snakemake's output `lines` (without newlines)."""
    rule, wildcards, in_stats, failed, log, stamp = None, "", False, False, None, None

    def started() -> str:
        return f"[{stamp or clock()}] {rule}" + (f" ({wildcards})" if wildcards else "")

    for line in lines:
        if failed:
            yield line
            continue
        if ERROR.match(line):
            if rule:
                yield started()
                rule = None
            failed = True
            yield line
            continue
        if match := STAMP.match(line):
            stamp = match.group(1)  # the time Snakemake gives the next job's start
            continue
        if match := RULE.match(line):
            if rule:
                yield started()
            rule, wildcards = match.group(1), ""
            continue
        if rule and (match := WILDCARDS.match(line)):
            wildcards = match.group(1)
            continue
        if rule and not line.startswith(" "):  # the job's block ended
            yield started()
            rule = None
        if in_stats:
            yield line
            in_stats = line.strip() != "" and not line.startswith("total")
            continue
        if line.startswith("Job stats:"):
            in_stats = True
            yield line
        elif STEPS.match(line) or line.startswith(KEEP):
            yield line
        elif match := LOG.match(line):
            log = match.group(1)
    if rule:
        yield started()
    if not failed:
        yield OUTPUTS
        yield REPORT
    if log:
        yield f"Snakemake's full log: {log}; each job's log: results/logs/"


def main() -> None:
    for line in condense(raw.rstrip("\n") for raw in sys.stdin):
        print(line, flush=True)


if __name__ == "__main__":
    main()
