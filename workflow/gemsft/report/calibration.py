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
    [low, high]; None is an open side. A `per_seed` target holds for every training seed's own value
    (results/metrics.csv), not just for their mean."""
    what: str
    objective: str
    task: str
    metric: str
    k: int | None
    low: float | None
    high: float | None
    per_seed: bool = False


TARGETS = (
    Target("code: CE pass@1", "ce", "code", "pass_at_k", 1, 10, 70),
    Target("code: CE pass@100", "ce", "code", "pass_at_k", 100, None, 95),
    Target("math: pre-trained greedy accuracy", BASE_OBJECTIVE, "math", "greedy_accuracy", None, 20, 80),
    Target("math: CE greedy accuracy", "ce", "math", "greedy_accuracy", None, 20, 80),
    # The mean can sit inside the range while one seed has lost the task (world seed 1's third
    # calibration: 14, 9 and 66). A claim's paired interval then spans the seeds' spread, so every
    # seed must be in range for the math claims to be decidable.
    Target("math: CE greedy accuracy, each training seed", "ce", "math", "greedy_accuracy", None, 20, 80,
           per_seed=True),
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


def seed_values(metrics: pd.DataFrame | None, model: str, target: Target) -> list[float]:
    """The target's value of each training seed, in seed order, from a results/metrics.csv frame
    (`gemsft.report.metrics_table`); empty without one."""
    if metrics is None or metrics.empty:
        return []
    df = metrics
    rows = df[(df["model"].astype(str) == model) & (df["objective"].astype(str) == target.objective)
              & (df["beta"].astype(str) == NO_BETA)
              & (df["task"].astype(str) == target.task) & (df["metric"].astype(str) == target.metric)]
    k = pd.to_numeric(rows["k"], errors="coerce")
    rows = rows[k.isna()] if target.k is None else rows[k == target.k]
    rows = rows.assign(seed=pd.to_numeric(rows["seed"], errors="raise")).sort_values("seed")
    repeated = sorted(set(rows["seed"][rows["seed"].duplicated()]))
    if repeated:
        raise ValueError(f"metrics.csv: target {target.what!r} of model {model!r} has several rows for "
                         f"training seed {', '.join(map(str, repeated))}; one run per seed expected")
    return [float(v) for v in pd.to_numeric(rows["value"], errors="raise")]


def _per_seed_status(values: list[float], target: Target) -> str:
    statuses = [status(v, target) for v in values]
    if not statuses or NOT_MEASURED in statuses:
        return NOT_MEASURED
    return MET if all(s == MET for s in statuses) else NOT_MET


def check(summary: pd.DataFrame, targets=TARGETS, metrics: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model and target: the target, its range, the measured value as shown ("34.5 ± 2.1";
    a per-seed target's values in seed order, "14.0 / 9.0 / 66.0"; "" when the run lacks it) and its
    status (met, not met, not measured). `metrics` is the run's results/metrics.csv, which the per-seed
    targets read; without it they are not measured."""
    cells = Cells(summary)
    rows = []
    for model in cells.models:
        for t in targets:
            if t.per_seed:
                values = seed_values(metrics, model, t)
                measured, verdict = " / ".join(f"{v:.1f}" for v in values), _per_seed_status(values, t)
            else:
                found = cells.get(Run(model, t.objective, NO_BETA), t.task, t.metric, t.k)
                measured = "" if found is None else format_ci(*found)
                verdict = status(None if found is None else found[0], t)
            rows.append({"model": model, "target": t.what, "range": range_text(t), "measured": measured,
                         "status": verdict})
    return pd.DataFrame(rows, columns=["model", "target", "range", "measured", "status"], dtype=object)
