"""What every rule script does first: log to the rule's log file, use the rule's threads, and end
cleanly when the scheduler stops the job."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def start(snakemake) -> None:
    """Send this process's stdout and stderr (file descriptors too, so tqdm bars and library
    warnings land there) to the rule's log, and size the thread pools to the rule's threads.

    torch is not imported here: jobs that never use it (code execution, math, tables, figures)
    would pay ~2 s each for it. OMP_NUM_THREADS sizes torch's pool when a script imports it later.

    SIGTERM (scancel, preemption, a SLURM time limit, Snakemake stopping its jobs) raises SystemExit,
    so the job unwinds: `files.atomic_path` removes what it was writing instead of leaving it behind
    under a temporary name, as the default handler (immediate death) would."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if snakemake.log:
        path = Path(snakemake.log[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "w", buffering=1, encoding="utf-8")
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
    threads = str(max(1, int(snakemake.threads)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = threads
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))


GPU_RESOURCE = "gpu"  # snakemake-executor-plugin-slurm's name; `sbatch --gpus=N`


def job_gpus(resources) -> int:
    """GPUs of a Snakemake job from its resources (0 when the rule names none)."""
    value = resources.get(GPU_RESOURCE, 0) if hasattr(resources, "get") else 0
    try:
        gpus = int(value or 0)
    except (TypeError, ValueError):
        raise ValueError(f"resource {GPU_RESOURCE!r} must be a whole number of GPUs, got {value!r}") from None
    if gpus < 0:
        raise ValueError(f"resource {GPU_RESOURCE!r} must not be negative, got {gpus}")
    return gpus
