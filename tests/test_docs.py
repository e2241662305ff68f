"""The README and docs/: a five-minute README that links every page, links that resolve, the test
command CI runs, a stage table that names each stage's package, a public API that imports, and the
generator of docs/results.md (docs/update_readme.py) on constructed runs; docs/update_study.py is
tests/test_study_page.py's."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
MAX_README_BYTES = 12 * 1024

# Markdown links and images: [text](target) / ![alt](target), target up to a space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)

PUBLIC_API = {
    "gemsft.losses": ["gem_loss", "ce_loss", "ce_entropy_loss", "fused_linear_gem_loss", "fused_linear_ce_loss"],
    "gemsft.execution": ["run_programs", "sandbox_capabilities"],
    "gemsft.metrics": ["pass_at_k", "ngram_diversity", "self_bleu_diversity", "sbert_diversity",
                       "extract_math_answer"],
}


def links(path: Path) -> list[str]:
    """The link targets of a Markdown file, outside code blocks."""
    return LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8")))


def local_target(target: str) -> str | None:
    """The file part of a relative link; None for web links, mail and in-page anchors."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
        return None
    return target.split("#", 1)[0].split("?", 1)[0] or None


def test_readme_is_short():
    size = README.stat().st_size
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes; at most {MAX_README_BYTES} (move text to docs/)"


def test_readme_links_every_docs_page():
    linked = {(README.parent / t).resolve() for t in map(local_target, links(README)) if t}
    missing = [p.name for p in DOCS if p.resolve() not in linked]
    assert DOCS, "docs/ has no pages"
    assert not missing, f"README.md does not link docs/{', docs/'.join(missing)}"


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = [t for t in links(page) if (f := local_target(t)) and not (page.parent / f).exists()]
    assert not broken, f"{page.relative_to(REPO)}: links to missing files: {broken}"


def test_readme_test_command_is_what_ci_runs():
    ci = [line.strip() for line in (REPO / ".ci/run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert "make test" in ci, ".ci/run no longer runs `make test`"
    tests_section = README.read_text(encoding="utf-8").split("## Tests", 1)
    assert len(tests_section) == 2, "README.md has no '## Tests' section"
    blocks = re.findall(r"```bash\n(.*?)```", tests_section[1].split("\n## ", 1)[0], re.S)
    assert any(line.strip() == "make test" for block in blocks for line in block.splitlines()), \
        "README.md's Tests section does not give `make test` as its command"
    assert re.search(r"^test:", (REPO / "Makefile").read_text(), re.M), "Makefile has no test target"


def test_stage_table_names_each_stage_package():
    rows = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    stages = sorted(p.stem for p in (REPO / "rules").glob("*.smk") if p.stem != "common")
    assert stages, "rules/ has no stage files"
    for stage in stages:
        assert (REPO / "workflow/gemsft" / stage).is_dir(), f"rules/{stage}.smk has no package workflow/gemsft/{stage}/"
        assert any(f"`{stage}.smk`" in row and f"`{stage}/" in row for row in rows), \
            f"README.md's stage table has no row naming `{stage}.smk` with its package `{stage}/`"


@pytest.mark.parametrize("module", sorted(PUBLIC_API))
def test_public_api_imports_and_is_listed(module):
    mod = importlib.import_module(module)
    missing = [name for name in PUBLIC_API[module] if not callable(getattr(mod, name, None))]
    assert not missing, f"{module} lacks {missing}"
    text = README.read_text(encoding="utf-8")
    assert f"from {module} import {', '.join(PUBLIC_API[module])}" in text, f"README.md does not list {module}'s API"


# --------------------------------------------------------------------------- the generated pages

def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def finished_run(root: Path, columns: list[str]) -> Path:
    """What docs/update_readme.py reads of a finished run: the comparison table (caption and Markdown
    table, as the table stage writes it) with `columns`, its provenance and the figures."""
    import pandas as pd

    tables = root / "results/tables"
    tables.mkdir(parents=True)
    rows = pd.DataFrame([[f"{c} {i}" for c in columns] for i in range(2)], columns=columns)
    (tables / "paper_vs_reproduction.md").write_text(
        f"The paper's numbers beside ours.\n\n{rows.to_markdown(index=False)}\n", encoding="utf-8")
    board = pd.DataFrame([["GEM has higher entropy than CE", "supported"]], columns=["claim", "verdict"])
    (tables / "claims.md").write_text(f"The claims' verdicts.\n\n{board.to_markdown(index=False)}\n", encoding="utf-8")
    (tables / "paper_vs_reproduction.provenance.json").write_text(
        '{"config_hash": "abc123", "git_commit": "0123456789abcdef", "git_dirty": true}')
    (root / "figures").mkdir()
    update_readme = load_script("update_readme")
    for name in update_readme.FIGURES:
        (root / "figures" / name).write_bytes(b"png " + name.encode())
    return root


COMPARISON_BEFORE = ["source", "what", "paper", "ours", "our run", "difference", "claim", "holds", "CIs overlap"]
COMPARISON_AFTER = ["source", "what", "paper", "ours", "our run", "difference", "claim", "verdict",
                    "claim difference (95% CI)"]


@pytest.mark.parametrize("columns", [COMPARISON_BEFORE, COMPARISON_AFTER], ids=["holds", "verdict"])
def test_results_page_shows_the_comparison_with_the_columns_it_has(tmp_path, columns):
    run, docs = finished_run(tmp_path / "run", columns), tmp_path / "docs"
    update_readme = load_script("update_readme")
    page = update_readme.write(run, docs).read_text(encoding="utf-8")
    header = next(line for line in page.splitlines() if line.startswith("| source"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == columns
    assert f"| {columns[-1]} 1 " in page and "The paper's numbers beside ours." in page
    assert "config hash `abc123`, commit `0123456789 with uncommitted changes`" in page
    # The scoreboard comes first, labelled a smoke-level read (one seed), and links the study's page.
    assert page.index("smoke-level read") < page.index("| GEM has higher entropy than CE | supported") < header_at(page)
    assert "[study.md](study.md)" in page
    for name in update_readme.FIGURES:
        assert (docs / name).read_bytes() == b"png " + name.encode() and f"![{name}]({name})" in page


def header_at(page: str) -> int:
    return page.index("| source")


@pytest.mark.parametrize("breakage", ["no table file", "no table in it", "no provenance", "no figure"])
def test_results_page_input_errors_name_the_file(tmp_path, breakage):
    run = finished_run(tmp_path / "run", COMPARISON_AFTER)
    table = run / "results/tables/paper_vs_reproduction.md"
    culprit = {"no table file": table, "no table in it": table,
               "no provenance": run / "results/tables/paper_vs_reproduction.provenance.json",
               "no figure": run / "figures/probability_transfer.png"}[breakage]
    if breakage == "no table in it":
        table.write_text("A caption and no table.\n")
    else:
        culprit.unlink()
    with pytest.raises(SystemExit) as caught:
        load_script("update_readme").main(["--run", str(run), "--docs", str(tmp_path / "docs")])
    message = str(caught.value)
    assert str(culprit) in message and "\n" not in message
    assert not (tmp_path / "docs").exists()  # nothing written, no figure copied


def test_readme_has_one_study_line_for_the_generator():
    """docs/update_study.py rewrites the README between these markers; before the study has run, the
    line links no docs/study.md (the page is generated from the run, never by hand)."""
    from gemsft.report.doc_pages import markers
    from gemsft.report.study_page import README_MARK

    text = README.read_text(encoding="utf-8")
    start, end = markers(README_MARK)
    assert text.count(start) == 1 and text.count(end) == 1 and text.index(start) < text.index(end)
    line = text.split(start, 1)[1].split(end, 1)[0]
    assert "\n" not in line
    assert ("docs/study.md" in line) == (REPO / "docs/study.md").is_file()
