"""Write docs/results.md, the results page of the embedded default, from a finished run.

Usage: .venv/bin/python docs/update_readme.py [--run DIR] [--docs DIR]   (after `make run`; DIR: this checkout)

Writes the whole of docs/results.md: the figures it shows, copied from figures/ into docs/ (figures/ is
generated and not versioned), the paper-vs-reproduction table from
results/tables/paper_vs_reproduction.md as the table stage wrote it (caption and whatever columns it
has), and a stamp with the run's config hash and commit. The README is left alone: it links
docs/results.md and shows docs/fig7a_bon_scaling.png, which this refreshes. docs/update_study.py writes
the study's page.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gemsft.report.doc_pages import DocInputError, commit_text, copy_figure, read_json_object, require_file

REPO = Path(__file__).resolve().parents[1]
PAGE = "results.md"
FIGURES = ("claims_forest.png", "fig7a_bon_scaling.png", "probability_transfer.png")
TABLE = "results/tables/paper_vs_reproduction"
SCOREBOARD = "results/tables/claims"
# The default run is one training seed on a few prompts per family: its verdicts are a smoke-level
# read, and the page says so before it shows them.
SMOKE_NOTE = ("The verdicts below are a smoke-level read: one training seed and a few prompts per family, "
              "so most intervals are wide. The study's verdicts (seven seeds of CE and GEM, every evaluation item, two "
              "world seeds) are in [study.md](study.md).")


def table_text(path: Path) -> str:
    """The table file's text: its caption and a Markdown table, with the columns the table stage gave
    it (so a change of columns needs no change here)."""
    text = require_file(path, "run `make run` first").read_text(encoding="utf-8").strip()
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if header is None or header + 1 >= len(lines) or not set(lines[header + 1]) <= set("|:- "):
        raise DocInputError(f"{path} holds no Markdown table (a header row and its |---| rule)")
    return text


def results_page(table: str, config_hash: str, commit: str, scoreboard: str = "") -> str:
    """The page's text: the smoke-level scoreboard, the figures (referenced relative to docs/), the
    comparison table, the stamp."""
    forest, *others = FIGURES
    figures = "\n\n".join(f"![{name}]({name})" for name in others)
    return (
        "# Results of the embedded default\n\n"
        "<!-- Written by docs/update_readme.py from a finished `make run`; edits by hand are overwritten. -->\n\n"
        f"{SMOKE_NOTE}\n\n"
        + (f"{scoreboard.strip()}\n\n" if scoreboard else "")
        + f"![{forest}]({forest})\n\n{figures}\n\n{table.strip()}\n\n"
        f"From `make run` on `config/config.yaml` (config hash `{config_hash}`, commit `{commit}`), "
        "refreshed with `.venv/bin/python docs/update_readme.py`.\n"
    )


def write(run: Path, docs: Path) -> Path:
    table = table_text(run / f"{TABLE}.md")
    scoreboard = table_text(run / f"{SCOREBOARD}.md")
    prov = read_json_object(run / f"{TABLE}.provenance.json", "run `make run` first")
    sources = [require_file(run / "figures" / name, "the run did not draw it") for name in FIGURES]
    for source in sources:  # all found before any is copied: a failed refresh leaves docs/ as it was
        copy_figure(source, docs / source.name)
    page = docs / PAGE
    page.write_text(results_page(table, prov.get("config_hash", "unknown"), commit_text(prov), scoreboard),
                    encoding="utf-8")
    return page


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=REPO, help="the finished run's directory (default: this checkout)")
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where the page and figures go")
    args = parser.parse_args(argv)
    try:
        page = write(args.run, args.docs)
    except DocInputError as err:
        raise SystemExit(f"update_readme: {err}") from None
    print(f"{page} written; figures copied to {args.docs}: {', '.join(FIGURES)}")


if __name__ == "__main__":
    main()
