"""gemsft.run_status: `make run`'s short status, on the real output of Snakemake running a small
workflow: one line per job (rule and wildcards), the steps done, where the results are at the end; an
error in full, and the pipeline's exit status kept."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO, SNAKEMAKE

WORKFLOW = textwrap.dedent("""\
    rule all:
        input: expand("out/{x}.txt", x=[1, 2])

    rule make:
        output: "out/{x}.txt"
        shell: "echo {wildcards.x} > {output}"
    """)


def status(tmp_path: Path, snakefile: str) -> subprocess.CompletedProcess:
    (tmp_path / "Snakefile").write_text(snakefile)
    command = (f"set -o pipefail; {SNAKEMAKE} --cores 1 2>&1 | "
               f"PYTHONPATH={REPO / 'workflow'} {sys.executable} -m gemsft.run_status")
    return subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True)


def test_one_line_per_job_and_where_the_results_are(tmp_path):
    result = status(tmp_path, WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    started = [line for line in lines if re.fullmatch(r"\[\d\d:\d\d:\d\d\] \w+.*", line)]
    assert sorted(line[11:] for line in started) == ["all", "make (x=1)", "make (x=2)"]
    assert "3 of 3 steps (100%) done" in lines and "Job stats:" in lines
    assert any(line.startswith("Results: results/metrics.csv") for line in lines)
    assert any(line.startswith("Snakemake's full log: ") and ".snakemake/log/" in line for line in lines)
    assert not any(line.strip().startswith(("input:", "output:", "jobid:", "reason:")) for line in lines)
    assert len(lines) < 25


def test_an_error_is_shown_in_full_and_the_run_fails(tmp_path):
    result = status(tmp_path, WORKFLOW.replace('shell: "echo {wildcards.x} > {output}"', 'shell: "exit 3"'))
    assert result.returncode != 0
    out = result.stdout
    assert "Error in rule make:" in out and "exit 3" in out
    assert "Results: results/metrics.csv" not in out
