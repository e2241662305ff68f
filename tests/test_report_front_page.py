"""The HTML report (`snakemake --report`) opens on the claims' scoreboard: its front page
(report/workflow.rst) shows the scoreboard table and links the forest plot, the scoreboard's category
sorts first, and the config is a category of its own instead of the front page. It has one section per
table and figure, each with its registry caption.

The report is built by the real Snakemake on a copy of the project whose report outputs are stand-ins:
`--report` reads only the files marked for it, so no stage has to run."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from gemsft.report import categories
from gemsft.report.claims import CLAIMS_COLUMNS, claims_table
from gemsft.report.registry import FIGURE_CAPTIONS, FIGURE_NAMES, TABLE_CAPTIONS, TABLE_NAMES

from conftest import copy_project
from conftest import run_snakemake as snakemake
from test_study_page import claim_rows

REPO = Path(__file__).resolve().parents[1]
PNG = REPO / "docs/fig7a_bon_scaling.png"


def report_variable(page: str, name: str):
    """A JSON variable the report's page defines in its own <script> element."""
    element = name.replace("_", "-")  # <script id="workflow-desc"> defines workflow_desc
    found = re.search(rf'<script id="{element}">\s*var {name} = (.*?);\s*</script>', page, re.S)
    assert found, f"the report defines no {name}"
    return json.loads(found.group(1))


def plain_text(caption_html: str) -> str:
    """A caption as a reader sees it: no tags, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", caption_html)).split())


def report_sections(results: dict) -> dict[tuple[str, str], dict]:
    """{("table" or "figure", name): its result in the report}: the outputs of the table and figure rules."""
    sections = {}
    for path, result in results.items():
        rule = result["job_properties"]["rule"]
        if rule in ("table", "figure"):
            assert result["labels"] == {rule: Path(path).stem}, path
            assert (rule, Path(path).stem) not in sections, f"two sections for {path}"
            sections[rule, Path(path).stem] = result
    return sections


def embedded_file(result: dict) -> bytes:
    """The file a report section shows, from its base64 data URI (a self-contained report)."""
    header, _, data = result["data_uri"].partition(";base64,")
    assert header.startswith("data:") and data, result["data_uri"][:80]
    return base64.b64decode(data)


def assert_captioned(sections: dict[tuple[str, str], dict]) -> None:
    """Each section's caption starts with what the registry says the table or figure shows."""
    for (kind, name), result in sections.items():
        registry = (TABLE_CAPTIONS if kind == "table" else FIGURE_CAPTIONS)[name]
        assert plain_text(result["caption"]).startswith(" ".join(registry.split())), (kind, name)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    project = copy_project(tmp_path_factory.mktemp("report"))
    (project / "results/tables").mkdir(parents=True)
    (project / "figures").mkdir()
    for name in TABLE_NAMES:
        (project / f"results/tables/{name}.csv").write_text("a,b\n1,2\n")
    for name in FIGURE_NAMES:
        shutil.copyfile(PNG, project / f"figures/{name}.png")
    # The scoreboard as the table stage writes it, from claims with a "pass@100" and a "|" in their text.
    claims = pd.DataFrame(claim_rows({"pass_at_100": "untestable", "math_greedy": "contradicted"}),
                          columns=CLAIMS_COLUMNS)
    claims_table(claims).to_csv(project / "results/tables/claims.csv", index=False)
    (project / "study.yaml").write_text("world:\n  seed: 5\n")
    snakemake(project, "--report", "report.html", "--configfile", "config/ci.yaml", "study.yaml")
    page = (project / "report.html").read_text(encoding="utf-8")
    return {name: report_variable(page, name) for name in ("workflow_desc", "categories", "results")}


def test_one_section_per_table_and_figure_with_its_caption(report):
    sections = report_sections(report["results"])
    drawn = set(FIGURE_NAMES) - {"fig12_model_gains"}  # Figure 12 needs several models; ci.yaml has one
    assert set(sections) == {("table", name) for name in TABLE_NAMES} | {("figure", name) for name in drawn}
    assert_captioned(sections)
    assert embedded_file(sections["figure", "fig9_parameter_distance"]) == PNG.read_bytes()  # the file itself


def test_front_page_shows_the_scoreboard_table(report):
    front = report["workflow_desc"]
    assert "<caption>The claims' scoreboard (<tt class=\"docutils literal\">results/tables/claims.csv</tt>)" in front
    for claim in ("GEM has higher entropy than CE", "GEM beats CE in greedy accuracy",
                  "CE is less diverse than the pre-trained model (Self-BLEU diversity)"):
        assert f"<td>{claim}</td>" in front, claim
    assert front.count("<td>supported</td>") == 11 and front.count("<td>contradicted</td>") == 1
    # Escaped for reStructuredText: no e-mail link, no markup error.
    assert "mailto:" not in front and "System Message" not in front and "problematic" not in front
    assert "both at the ceiling | 100%" in front
    assert "world seed 5" in front  # the run's world seed, from the merged config


def test_front_page_links_the_forest_plot_and_the_categories(report):
    front = report["workflow_desc"]
    assert "javascript:app.showResultInfo('figures/claims_forest.png')" in front
    for name in categories.ALL:
        assert f"javascript:app.showCategory('{name.replace(' ', '%20')}')" in front, name


def test_config_is_a_category_not_the_front_page(report):
    front = report["workflow_desc"]
    assert "zipf_exponent" not in front and "code-block" not in front and '"world"' not in front
    files = [path for subcategory in report["categories"][categories.CONFIGURATION].values() for path in subcategory]
    assert sorted(Path(path).name for path in files) == ["ci.yaml", "config.yaml", "study.yaml"]
    for path in files:
        # The caption's code block is the merged config: config.yaml, then ci.yaml, then study.yaml.
        block = re.search(r"<pre[^>]*>(.*?)</pre>", report["results"][path]["caption"], re.S).group(1)
        merged = json.loads(html.unescape(re.sub(r"<[^>]+>", "", block)))
        assert merged["world"]["seed"] == 5 and merged["world"]["zipf_exponent"] == 1.0
        assert merged["sampling"]["tasks"]["chat"]["prompts"] == 12


def test_scoreboard_category_holds_the_claims_and_sorts_first(report):
    found = report["categories"]
    board = sorted(Path(p).name for subcategory in found[categories.SCOREBOARD].values() for p in subcategory)
    assert board == ["claims.csv", "claims_forest.png"]
    tables = {Path(p).stem for subcategory in found[categories.TABLES].values() for p in subcategory}
    figures = {Path(p).stem for subcategory in found[categories.FIGURES].values() for p in subcategory}
    assert "claims" not in tables and "claims_forest" not in figures and "paper_vs_reproduction" in tables
    # The report's menu sorts categories with JavaScript's localeCompare; case-insensitive order agrees.
    assert sorted(found, key=str.casefold)[0] == categories.SCOREBOARD
    assert set(found) == set(categories.ALL)


def test_every_scoreboard_name_is_a_registered_table_or_figure():
    assert categories.SCOREBOARD_TABLES <= set(TABLE_NAMES)
    assert categories.SCOREBOARD_FIGURES <= set(FIGURE_NAMES)
    assert categories.table_category("claims") == categories.figure_category("claims_forest") == categories.SCOREBOARD
    assert categories.table_category("diversity") == categories.TABLES
    assert categories.figure_category("fig7a_bon_scaling") == categories.FIGURES


def test_front_page_names_the_categories_it_looks_for():
    """workflow.rst finds the scoreboard and the config by their category names (Jinja cannot import)."""
    text = (REPO / "report/workflow.rst").read_text(encoding="utf-8")
    assert f'"{categories.SCOREBOARD}"' in text and f'"{categories.CONFIGURATION}"' in text
