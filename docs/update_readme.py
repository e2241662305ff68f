"""Write docs/results.md, the results page of the embedded default, from a finished run.

Usage: .venv/bin/python docs/update_readme.py   (after `make run`)

Writes the whole of docs/results.md: the figures it shows, copied from figures/ into docs/ (figures/ is
generated and not versioned), the paper-vs-reproduction table from
results/tables/paper_vs_reproduction.md, and a stamp with the run's config hash and commit. The README
is left alone: it links docs/results.md and shows docs/fig7a_bon_scaling.png, which this refreshes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGE = DOCS / "results.md"
FIGURES = ("fig7a_bon_scaling.png", "probability_transfer.png")


def results_page(table: str, config_hash: str, commit: str) -> str:
    """The page's text: the figures (referenced relative to docs/), the table, the stamp."""
    figures = "\n\n".join(f"![{name}]({name})" for name in FIGURES)
    return (
        "# Results of the embedded default\n\n"
        "<!-- Written by docs/update_readme.py from a finished `make run`; edits by hand are overwritten. -->\n\n"
        f"{figures}\n\n{table.strip()}\n\n"
        f"From `make run` on `config/config.yaml` (config hash `{config_hash}`, commit `{commit}`), "
        "refreshed with `.venv/bin/python docs/update_readme.py`.\n"
    )


def main() -> None:
    table = REPO / "results/tables/paper_vs_reproduction.md"
    if not table.is_file():
        raise SystemExit(f"{table.relative_to(REPO)} is missing: run `make run` first")
    for name in FIGURES:
        shutil.copyfile(REPO / "figures" / name, DOCS / name)
    prov = json.loads((REPO / "results/tables/paper_vs_reproduction.provenance.json").read_text())
    commit = (prov.get("git_commit") or "unknown")[:10] + (" with uncommitted changes" if prov.get("git_dirty") else "")
    PAGE.write_text(results_page(table.read_text(), prov["config_hash"], commit))
    print(f"{PAGE.relative_to(REPO)} written; figures copied to docs/: {', '.join(FIGURES)}")


if __name__ == "__main__":
    main()
