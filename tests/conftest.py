"""Fixtures shared by the test files: running Snakemake on a fresh copy of the project, and the
embedded default pipeline run (config/ci.yaml) that the end-to-end checks and the tests of the
pipeline's real models read. The run happens once per session, only when a selected test needs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# What a project needs besides the installed package; figure/table modules and the paper's numbers
# are rule inputs, so they are copied too.
# The local mirror of the real datasets (.ci/run sets GEMSFT_DATA_MIRROR to ../shared/data).
MIRROR = Path(os.environ.get("GEMSFT_DATA_MIRROR") or REPO.parent / "shared" / "data").resolve()
PROJECT_FILES = ("Snakefile", "rules", "workflow/scripts", "workflow/gemsft", "config", "profiles", "envs", "report")


def copy_project(dest: Path) -> Path:
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / name)
    return dest


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts from the 'Job stats' table of a dry run."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    counts = {}
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> Path:
    """The whole default DAG as `make run` runs it, on config/ci.yaml's fewer evaluation prompts
    (same models, same samples per prompt), so that CI stays short. Returns the project directory."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    run_snakemake(project, "--profile", "profiles/local", "--cores", "2", "--configfile", "config/ci.yaml")
    return project
