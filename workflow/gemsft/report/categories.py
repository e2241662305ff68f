"""The categories of the HTML report (`snakemake --report`): which of them a table or a figure goes in.

Plain data with no imports, like `gemsft.report.registry`: the rules read it on every Snakemake start.
The report's menu lists categories alphabetically, so the scoreboard's name sorts before the others;
report/workflow.rst (the front page) shows what is in it.
"""

SCOREBOARD = "Claims scoreboard"
TABLES = "Tables"
FIGURES = "Figures"
CONFIGURATION = "Configuration"  # the run's config files, with the merged config in their caption
ALL = (SCOREBOARD, CONFIGURATION, FIGURES, TABLES)

#: the table and the figure (names as in the registry) that make up the scoreboard
SCOREBOARD_TABLES = frozenset({"claims"})
SCOREBOARD_FIGURES = frozenset({"claims_forest"})


def table_category(name: str) -> str:
    return SCOREBOARD if name in SCOREBOARD_TABLES else TABLES


def figure_category(name: str) -> str:
    return SCOREBOARD if name in SCOREBOARD_FIGURES else FIGURES
