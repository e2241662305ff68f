"""What a figure plots, as a table beside its image (`figures/<name>.csv`): one row per plotted point,
bar or interval, recorded by the figure module from the same arrays it hands to matplotlib.

A PNG cannot be checked or quoted; this table can. The tests compare it with the summary (every run,
every k, its interval) and with the figure's own artists, and a reader can re-plot a figure or take a
number from it without the summary. Columns (`COLUMNS`): the panel, the series (what the legend or the
colour names), the run's objective and beta where a point is one run's, the summary's task and metric
of the value where it is one, the position on the category or x axis with its interval where the figure
draws one (Figure 6's diversity), and the plotted value with its interval (NaN where none is drawn).
"""

from __future__ import annotations

import math
import os
import weakref
from pathlib import Path

import numpy as np
import pandas as pd

from gemsft.files import atomic_path

COLUMNS = ("panel", "series", "objective", "beta", "task", "metric", "x", "x_low", "x_high", "value", "ci_low",
           "ci_high")
NUMERIC_COLUMNS = ("x_low", "x_high", "value", "ci_low", "ci_high")

# Figure -> its recorded rows. Weak keys: a closed, collected figure takes its record with it.
_RECORDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _column(values, n: int) -> list:
    """`values` as n entries: a scalar (or None, for "no interval") repeated, or an array of length n."""
    if values is None:
        return [math.nan] * n
    if np.ndim(values) == 0:
        return [values] * n
    values = list(np.asarray(values).tolist())
    if len(values) != n:
        raise ValueError(f"plotted series has {n} values but {len(values)} entries in another column")
    return values


def record(fig, panel: str, series: str, x, value, ci_low=None, ci_high=None, *, objective: str = "",
           beta: str = "", task: str = "", metric: str = "", x_low=None, x_high=None) -> None:
    """Record the points of one plotted series of `fig`: `x` and `value` (arrays of equal length, or
    scalars for one point), intervals as arrays, scalars or None."""
    n = int(np.size(value))
    columns = {"x": _column(x, n), "x_low": _column(x_low, n), "x_high": _column(x_high, n),
               "value": _column(value, n), "ci_low": _column(ci_low, n), "ci_high": _column(ci_high, n)}
    rows = _RECORDS.setdefault(fig, [])
    for i in range(n):
        rows.append({"panel": panel, "series": series, "objective": objective, "beta": beta, "task": task,
                     "metric": metric, **{name: values[i] for name, values in columns.items()}})


def plotted(fig) -> pd.DataFrame:
    """Every row recorded for `fig`, in the order plotted."""
    return pd.DataFrame(_RECORDS.get(fig, []), columns=list(COLUMNS))


def write_plotted(fig, path: str | os.PathLike, name: str = "figure") -> Path:
    """Write `fig`'s recorded rows as CSV (atomically); a figure that recorded nothing is an error, not
    an empty table."""
    table = plotted(fig)
    if table.empty:
        raise ValueError(f"{name} recorded no plotted data (its module must call gemsft.report.figures.plotted.record)")
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


def read_plotted(path: str | os.PathLike) -> pd.DataFrame:
    """A figure's table as written: labels and `x` as strings ("na" is a beta, not a missing value),
    the other columns as floats (NaN where no interval is drawn)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a figure's plotted data (missing columns {', '.join(missing)})")
    for column in NUMERIC_COLUMNS:
        table[column] = [float(text) if text else math.nan for text in table[column]]
    return table
