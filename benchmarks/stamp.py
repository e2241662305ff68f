"""The commit a benchmark measured: the first words of every result file's header.

docs/update_benchmarks.py reads it back (``commit <hash>``) and states it beside each number, so every
number in the docs names the commit it was measured on.
"""

from __future__ import annotations

from pathlib import Path

from gemsft.provenance import git_commit, git_dirty

REPO = Path(__file__).resolve().parents[1]


def commit_stamp(repo: Path = REPO) -> str:
    """``commit <short hash>``, with ``(uncommitted changes)`` when tracked files differ from it."""
    commit = git_commit(repo)
    if commit is None:
        return "commit unknown (not a git checkout)"
    return f"commit {commit[:7]}" + (" (uncommitted changes)" if git_dirty(repo) else "")
