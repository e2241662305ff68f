"""CPU seconds a fresh process spends importing the stack a rule script needs.

Usage: python benchmarks/import_cost.py [--repeats 5] [--out FILE]

Why the DAG merges jobs that need the same heavy imports, and keeps torch out of jobs that do not use
it (docs/benchmarks.md): each statement below runs in a fresh interpreter, ``--repeats`` times, and the
child's user + system CPU seconds are read from ``resource.getrusage(RUSAGE_CHILDREN)`` around it. The
median and the range of the runs are reported, beside an empty interpreter's.

Writes the table to benchmarks/results/import_cost.txt (``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from stamp import commit_stamp  # benchmarks/ is the script's directory, first on sys.path
from text_table import table

OUT = Path(__file__).resolve().parent / "results" / "import_cost.txt"
STATEMENTS = {
    "empty interpreter": "pass",
    "numpy + pandas": "import numpy, pandas",
    "torch": "import torch",
    "transformers' Llama model class": "import torch; from transformers import LlamaForCausalLM",
    "transformers' Llama class + tokenizer": "from transformers import LlamaForCausalLM, PreTrainedTokenizerFast",
}


def child_cpu_seconds(statement: str) -> float:
    """User + system CPU seconds of one fresh interpreter running ``statement``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", statement], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    lines = [f"import_cost: {commit_stamp()}; machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; "
             f"load average at start {os.getloadavg()[0]:.2f}",
             f"CPU seconds (user + system) of a fresh interpreter per statement: the median of {args.repeats} "
             "runs, and the range", ""]
    rows = []
    for name, statement in STATEMENTS.items():
        runs = [child_cpu_seconds(statement) for _ in range(args.repeats)]
        print(f"{name}: {', '.join(f'{s:.2f}' for s in runs)}", flush=True)
        rows.append([name, statement, f"{statistics.median(runs):.2f}", f"{min(runs):.2f}-{max(runs):.2f}"])
    lines += table(["import", "statement", "CPU s", "range"], rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines) + f"\n\nwrote {args.out}")


if __name__ == "__main__":
    main()
