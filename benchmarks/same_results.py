"""Does a change keep the results? The smoke DAG at two revisions, compared byte for byte.

Usage: python benchmarks/same_results.py --before REV [--after REV] [--out benchmarks/results/same_results.txt]

Each side is a fresh copy of the project: a clone at REV, or (without --after) the working tree as it
is, tracked and untracked-but-not-ignored files. Both run config/smoke.yaml (every stage of the
embedded default, shrunk) with CE and GEM trained, using this checkout's `.venv` with the copy's own
package first on PYTHONPATH. Then results/metrics.csv, results/summary.csv and every table
(csv, md, tex) are compared byte for byte; a difference is listed by file and first differing line.
Stage JSONs are not compared: their provenance names the commit. A refactor should report
"identical" for every file; anything else is a behaviour change to explain.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# CE beside GEM, so both loss paths (logits-based and fused) are compared.
EXTRA_CONFIG = "train:\n  objectives: [ce, gem]\n"


def copy_revision(rev: str | None, dest: Path) -> str:
    """A fresh copy of REV (None: the working tree); returns what it is, for the report."""
    if rev is None:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                               capture_output=True, text=True).stdout.split("\0")
        for name in filter(None, files):
            if (REPO / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, dest / name)
        return "working tree"
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    subprocess.run(["git", "checkout", "-q", rev], cwd=dest, check=True)
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=dest, check=True, capture_output=True,
                          text=True).stdout.strip()


def run_smoke(project: Path) -> None:
    os.symlink(REPO / ".venv", project / ".venv")
    (project / "objectives.yaml").write_text(EXTRA_CONFIG)
    env = {**os.environ, "PYTHONPATH": str(project / "workflow")}
    proc = subprocess.run([str(REPO / ".venv/bin/snakemake"), "--profile", "profiles/local", "--cores", "2",
                           "--configfile", "config/smoke.yaml", "objectives.yaml"],
                          cwd=project, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"snakemake failed in {project}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def compared_files(results: Path) -> list[str]:
    names = ["metrics.csv", "summary.csv"]
    names += sorted(str(p.relative_to(results)) for p in (results / "tables").glob("*")
                    if p.suffix in (".csv", ".md", ".tex"))
    return names


def first_difference(a: bytes, b: bytes) -> str:
    lines_a, lines_b = a.decode().splitlines(), b.decode().splitlines()
    for i, (x, y) in enumerate(zip(lines_a, lines_b), 1):
        if x != y:
            return f"line {i}: {x!r} vs {y!r}"
    return f"{len(lines_a)} vs {len(lines_b)} lines"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git revision of the reference side")
    parser.add_argument("--after", default=None, help="git revision of the other side (default: the working tree)")
    parser.add_argument("--out", default="benchmarks/results/same_results.txt")
    args = parser.parse_args()
    if not (REPO / ".venv/.installed").is_file():
        raise SystemExit("no built environment: run `make env` first")
    with tempfile.TemporaryDirectory() as tmp:
        sides = {}
        for side, rev in (("before", args.before), ("after", args.after)):  # both copied before either runs
            project = Path(tmp) / side
            project.mkdir()
            sides[side] = (copy_revision(rev, project), project)
        for side, (label, project) in sides.items():
            print(f"{side}: {label}: running config/smoke.yaml ...", flush=True)
            run_smoke(project)
            sides[side] = (label, project / "results")
        (before_label, before), (after_label, after) = sides["before"], sides["after"]
        lines = [f"config/smoke.yaml (objectives ce, gem) at {before_label} vs {after_label}:"]
        names = sorted(set(compared_files(before)) | set(compared_files(after)))
        different = 0
        for name in names:
            a, b = before / name, after / name
            if not (a.is_file() and b.is_file()):
                verdict = f"only in {'before' if a.is_file() else 'after'}"
            elif a.read_bytes() == b.read_bytes():
                verdict = f"identical ({a.stat().st_size} bytes)"
            else:
                verdict = "DIFFERENT: " + first_difference(a.read_bytes(), b.read_bytes())
            different += not verdict.startswith("identical")
            lines.append(f"  {name:40s} {verdict}")
    lines.append(f"{len(names) - different} of {len(names)} files identical")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    sys.exit(1 if different else 0)


if __name__ == "__main__":
    main()
