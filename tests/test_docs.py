"""The README and docs/: a five-minute README that links every page, links that resolve, the test
command CI runs, a stage table that names each stage's package, and a public API that imports."""

from __future__ import annotations

import importlib
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
    "gemsft.metrics": ["pass_at_k", "ngram_diversity", "self_bleu_diversity", "sbert_diversity"],
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
