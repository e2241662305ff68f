"""The commit a benchmark measured: the first words of every result file's header.

docs/update_benchmarks.py reads it back (``commit <hash>``) and states it beside each number, so every
number in the docs names the commit it was measured on.
"""

from __future__ import annotations

import platform
from pathlib import Path

from gemsft.provenance import git_commit, git_dirty

REPO = Path(__file__).resolve().parents[1]


def commit_stamp(repo: Path = REPO) -> str:
    """``commit <short hash>``, with ``(uncommitted changes)`` when tracked files differ from it."""
    commit = git_commit(repo)
    if commit is None:
        return "commit unknown (not a git checkout)"
    return f"commit {commit[:7]}" + (" (uncommitted changes)" if git_dirty(repo) else "")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo; empty where there is none."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def machine_text() -> str:
    """The CPU and the kernels torch picks on it: a pre-trained model's floats depend on both (the
    same code and seed pretrained another model on another machine, docs/calibration.md)."""
    import torch

    info = _cpuinfo()
    where = ", ".join(f"{name} {info[key]}" for key, name in (("cpu family", "family"), ("model", "model"))
                      if key in info)
    return (f"machine: {cpu_name()}" + (f" ({where})" if where else "")
            + f"; torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
