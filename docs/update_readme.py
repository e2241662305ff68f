"""Refresh the README's results section from a finished embedded-default run.

Usage: .venv/bin/python docs/update_readme.py   (after `make run`)

Copies the figures the README shows into docs/ (figures/ is generated and not versioned) and
replaces the text between the README's `<!-- results -->` markers with the paper-vs-reproduction
table from results/tables/paper_vs_reproduction.md, stamped with the run's config hash and commit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README_FIGURES = ("fig7a_bon_scaling.png", "probability_transfer.png")
START, END = "<!-- results -->", "<!-- /results -->"


def main() -> None:
    table = REPO / "results/tables/paper_vs_reproduction.md"
    if not table.is_file():
        raise SystemExit(f"{table.relative_to(REPO)} is missing: run `make run` first")
    for name in README_FIGURES:
        shutil.copyfile(REPO / "figures" / name, REPO / "docs" / name)
    prov = json.loads((REPO / "results/tables/paper_vs_reproduction.provenance.json").read_text())
    body = table.read_text().strip()
    figures = "\n\n".join(f"![{name}](docs/{name})" for name in README_FIGURES)
    commit = (prov.get("git_commit") or "unknown")[:10] + (" with uncommitted changes" if prov.get("git_dirty") else "")
    section = (f"{START}\n{figures}\n\n{body}\n\nFrom `make run` on `config/config.yaml` (config hash "
               f"`{prov['config_hash']}`, commit `{commit}`), refreshed with "
               f"`.venv/bin/python docs/update_readme.py`.\n{END}")
    readme = REPO / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    readme.write_text(head + section + rest.split(END, 1)[1])
    print(f"README.md: results section refreshed; figures copied to docs/: {', '.join(README_FIGURES)}")


if __name__ == "__main__":
    main()
