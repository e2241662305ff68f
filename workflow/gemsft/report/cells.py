"""The summary as the tables look it up: one number with its interval per (run, task, metric, k), and
the display string of a cell ("12.3 ± 0.4"), so the CSV, Markdown and LaTeX files show the same cells.
A metric a run lacks is an empty cell: the DAG may have skipped a stage."""

from __future__ import annotations

import math
from typing import NamedTuple

import pandas as pd

from gemsft.report import alignment_tax
from gemsft.report.labels import objective_label, run_sort_key
from gemsft.report.summary_reader import normalise

MISSING = "—"

# Metrics not in the summary that a lookup derives from it.
DERIVED_METRICS = {alignment_tax.AVERAGE}

# Decimals as the paper prints them: entropies to 0.01, percentages to 0.1.
DIGITS = {"entropy": 2, "perplexity": 2, "kl_to_world": 3, "l2_distance_from_base": 2,
          "ead_diversity": 3}


def format_ci(value, low, high, digits: int = 1) -> str:
    """"12.3 ± 0.4" with the larger side of the interval as half-width (bootstrap CIs are asymmetric);
    just the value when the interval is unknown, "" when the value is."""
    if value is None or pd.isna(value):
        return ""
    text = f"{value:.{digits}f}"
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return text
    return f"{text} ± {max(value - low, high - value):.{digits}f}"


class Run(NamedTuple):
    model: str
    objective: str
    beta: str


class Cells:
    """The summary as a dict keyed (run, task, metric, k), k None where the metric has none."""

    def __init__(self, summary: pd.DataFrame):
        if summary is None or len(summary) == 0:
            raise ValueError("summary has no rows (was results/summary.csv built from any metrics?)")
        df = normalise(summary)
        self.cells: dict[tuple, tuple[float, float, float]] = {}
        for r in df.itertuples(index=False):
            key = (Run(r.model, r.objective, r.beta), r.task, r.metric, None if pd.isna(r.k) else int(r.k))
            if key in self.cells:
                raise ValueError(f"summary has two rows for {key}")
            self.cells[key] = (r.value, r.ci_low, r.ci_high)
        self.models = sorted({key[0].model for key in self.cells})

    def get(self, run: Run, task: str, metric: str, k: int | None = None) -> tuple[float, float, float] | None:
        if metric == alignment_tax.AVERAGE:
            return self._tax_average(run)
        return self.cells.get((run, task, metric, k))

    def _tax_average(self, run: Run):
        """The mean alignment tax over every forgetting task and metric of the run (the paper's average
        over the leaderboard tasks), without an interval."""
        taxes = [v[0] for (r, _, m, _), v in self.cells.items()
                 if r == run and alignment_tax.taxed_metric(m) is not None and not pd.isna(v[0])]
        return (alignment_tax.mean_tax(taxes), math.nan, math.nan) if taxes else None

    def forgetting_metrics(self) -> list[tuple[str, str]]:
        """(task, metric) of every forgetting score that has an alignment tax."""
        scores = {(t, alignment_tax.taxed_metric(m)) for (_, t, m, _) in self.cells}
        return sorted({(t, m) for t, m in scores if m is not None},
                      key=lambda tm: (tm[0], tm[1] not in ("acc", "acc_norm"), tm[1]))

    def runs(self, tasks, objectives=None) -> list[Run]:
        found = {key[0] for key in self.cells if key[1] in tasks}
        if objectives is not None:
            found = {r for r in found if r.objective in objectives}
        return sorted(found, key=lambda r: (r.model, run_sort_key(r.objective, r.beta)))

    def ks(self, task: str, metric: str, runs=None) -> list[int]:
        return sorted({key[3] for key in self.cells if key[1] == task and key[2] == metric
                       and key[3] is not None and (runs is None or key[0] in runs)})

    def has(self, task: str, metric: str) -> bool:
        return any(key[1] == task and key[2] == metric for key in self.cells)


class Column(NamedTuple):
    title: str
    task: str
    metric: str
    k: int | None = None


def cell_text(cells: Cells, run: Run, col: Column) -> str:
    found = cells.get(run, col.task, col.metric, col.k)
    return "" if found is None else format_ci(*found, digits=DIGITS.get(col.metric, 1))


def table_frame(cells: Cells, runs: list[Run], columns: list[Column]) -> pd.DataFrame:
    """One row per run, one string cell per column; a model column only when the summary has several."""
    several = len(cells.models) > 1
    rows = []
    for run in runs:
        row = {"model": run.model} if several else {}
        row["run"] = objective_label(run.objective, run.beta)
        row.update({col.title: cell_text(cells, run, col) for col in columns})
        rows.append(row)
    head = (["model"] if several else []) + ["run"]
    return pd.DataFrame(rows, columns=head + [c.title for c in columns], dtype=object)
