"""Wall time of building the environment from a fresh clone: `make env` with no .venv.

Usage: python benchmarks/env_time.py [--repeats 1] [--out benchmarks/results/env_time.txt]

Clones HEAD into a temporary directory and times `make env` there (a venv with the pinned CPU stack
of requirements/lock.txt and the project installed in it), ``--repeats`` times, each in a new clone.
Packages come from PyPI, through pip's HTTP cache and PIP_FIND_LINKS as this machine has them (the
output states both: a local wheel skips that download). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stamp import commit_stamp  # benchmarks/ is the script's directory, first on sys.path

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results" / "env_time.txt"


def pip_cache() -> str:
    """Where pip finds packages without downloading them: its HTTP cache and PIP_FIND_LINKS."""
    out = subprocess.run([sys.executable, "-m", "pip", "cache", "info"], capture_output=True, text=True).stdout
    http = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                 if line.startswith("Package index page cache size")), "unknown")
    links = os.environ.get("PIP_FIND_LINKS")
    wheels = sorted(p.name for p in Path(links).glob("*.whl")) if links and Path(links).is_dir() else []
    # The folder's path stays out of the result: it is this machine's.
    return (f"pip's HTTP cache before the runs: {http}; "
            + (f"a local wheel folder (PIP_FIND_LINKS) with {', '.join(wheels)}" if wheels
               else "no local wheel folder (PIP_FIND_LINKS)" if not links else "an empty PIP_FIND_LINKS folder"))


def time_make_env() -> float:
    with tempfile.TemporaryDirectory(prefix="gemsft-env-") as tmp:
        clone = Path(tmp) / "gemsft"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        start = time.perf_counter()
        proc = subprocess.run(["make", "env"], cwd=clone, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"make env failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    runs = []
    for i in range(args.repeats):
        runs.append(time_make_env())
        print(f"make env, run {i + 1}: {runs[-1]:.1f} s", flush=True)
    median = statistics.median(runs)
    lines = [f"make env from a fresh clone, {commit_stamp()}, on {os.cpu_count()} CPUs: {median:.1f} s "
             f"({median / 60:.2f} min), the median of {len(runs)} runs; all: {', '.join(f'{s:.1f}' for s in runs)} s",
             pip_cache(), f"load average at start {load:.2f}"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
