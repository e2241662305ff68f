"""What every rule script does first (gemsft.rule_script.start): its log and its thread count."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import sys
    from types import SimpleNamespace
    from gemsft.rule_script import start

    start(SimpleNamespace(log=[sys.argv[1]], threads=1))
    assert "torch" not in sys.modules  # not imported for jobs that do not need it
    import torch

    print("threads", torch.get_num_threads())
    print("to the log", file=sys.stderr)
""")


def test_start_logs_and_sizes_torch_threads_without_importing_torch(tmp_path):
    log = tmp_path / "logs" / "job.log"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""  # everything went to the log
    text = log.read_text()
    assert "threads 1" in text and "to the log" in text


# `snakemake -n` on the default config, in this interpreter, then what it imported.
DRY_RUN = textwrap.dedent("""
    import sys
    from snakemake.cli import main

    try:
        main(["--dry-run", "--cores", "1", "--nolock"])
    except SystemExit as exit:
        if exit.code:
            raise
    print("heavy imports:", *sorted(name for name in ("torch", "matplotlib") if name in sys.modules))
""")


def test_planning_the_dag_imports_neither_torch_nor_matplotlib():
    """Every Snakemake start (a dry run, each SLURM job's own Snakemake) parses the rules and plans the
    DAG, evaluating every input function and param (the tables' and figures' captions among them);
    none may pull in torch (about 1.5 s) or matplotlib. The jobs import them where they run."""
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", DRY_RUN], cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "This was a dry-run" in proc.stdout + proc.stderr  # the DAG was planned, not just parsed
    assert proc.stdout.splitlines()[-1] == "heavy imports:", proc.stdout.splitlines()[-1]
