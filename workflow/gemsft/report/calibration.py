"""The embedded world's calibration targets, checked on a run's summary: the ranges the base model and
CE must land in for the paper's claims to be decidable on the world at all (a pass@100 at the ceiling,
or an accuracy near 0 or 100, leaves no room for GEM to differ from CE)."""

from __future__ import annotations

import math
from typing import NamedTuple

import pandas as pd

from gemsft.config import BASE_OBJECTIVE, NO_BETA
from gemsft.report.alignment_tax import tax_metric
from gemsft.report.cells import Cells, Run, format_ci

MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"


class Target(NamedTuple):
    """A summary cell of the run `objective` (beta-free: the base model or CE) that must lie in
    [low, high]; None is an open side."""
    what: str
    objective: str
    task: str
    metric: str
    k: int | None
    low: float | None
    high: float | None


TARGETS = (
    Target("code: CE pass@1", "ce", "code", "pass_at_k", 1, 10, 70),
    Target("code: CE pass@100", "ce", "code", "pass_at_k", 100, None, 95),
    Target("math: pre-trained greedy accuracy", BASE_OBJECTIVE, "math", "greedy_accuracy", None, 20, 80),
    Target("math: CE greedy accuracy", "ce", "math", "greedy_accuracy", None, 20, 80),
    Target("knowledge: pre-trained accuracy", BASE_OBJECTIVE, "knowledge", "acc", None, 70, None),
    # On accuracy, the score the pre-trained target is of and the alignment-tax claim pairs.
    Target("knowledge: CE alignment tax (accuracy)", "ce", "knowledge", tax_metric("acc"), None, 1, 15),
)


def range_text(target: Target) -> str:
    if target.low is not None and target.high is not None:
        return f"in [{target.low:g}, {target.high:g}]"
    if target.high is not None:
        return f"≤ {target.high:g}"
    if target.low is not None:
        return f"≥ {target.low:g}"
    return "any"


def status(value: float | None, target: Target) -> str:
    """Judged on the point estimate: the targets are where the world is tuned to put the runs, not
    claims about them."""
    if value is None or math.isnan(value):
        return NOT_MEASURED
    inside = (target.low is None or value >= target.low) and (target.high is None or value <= target.high)
    return MET if inside else NOT_MET


def check(summary: pd.DataFrame, targets=TARGETS) -> pd.DataFrame:
    """One row per model and target: the target, its range, the measured value as shown ("34.5 ± 2.1",
    "" when the summary lacks it) and its status (met, not met, not measured)."""
    cells = Cells(summary)
    rows = []
    for model in cells.models:
        for t in targets:
            found = cells.get(Run(model, t.objective, NO_BETA), t.task, t.metric, t.k)
            value = None if found is None else found[0]
            rows.append({"model": model, "target": t.what, "range": range_text(t),
                         "measured": "" if found is None else format_ci(*found),
                         "status": status(value, t)})
    return pd.DataFrame(rows, columns=["model", "target", "range", "measured", "status"], dtype=object)
