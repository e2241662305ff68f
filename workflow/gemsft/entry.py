"""What every rule script does first: log to the rule's log file and use the rule's threads."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def start(snakemake) -> None:
    """Send this process's stdout and stderr (file descriptors too, so tqdm bars and library
    warnings land there) to the rule's log, and size torch's thread pool to the rule's threads."""
    if snakemake.log:
        path = Path(snakemake.log[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "w", buffering=1, encoding="utf-8")
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
    import torch

    torch.set_num_threads(max(1, int(snakemake.threads)))
