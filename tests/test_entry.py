"""What every rule script does first (gemsft.rule_script.start): its log and its thread count."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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


def test_planning_the_dag_does_not_import_torch():
    """Every Snakemake start (a dry run, each SLURM job's own Snakemake) parses the rules; the
    gemsft modules they import must not pull in torch (about 1.5 s here)."""
    from pathlib import Path

    rules = Path(__file__).resolve().parents[1] / "rules"
    imports = sorted({line.strip() for path in rules.glob("*.smk") for line in path.read_text().splitlines()
                      if line.startswith(("from gemsft", "import gemsft"))})
    assert imports, "no gemsft imports found in rules/*.smk"
    code = "\n".join(["import sys", *imports, "assert 'torch' not in sys.modules, 'torch was imported'"])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
