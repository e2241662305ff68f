"""results/summary.csv as the tables and the figures read it: one reader, one set of column types."""

from __future__ import annotations

import math
import os

import pandas as pd

from gemsft.config import beta_label

#: what a reader needs of a summary; n_prompts and n_seeds are optional
REQUIRED_COLUMNS = ("model", "objective", "beta", "task", "metric", "k", "value", "ci_low", "ci_high")
_KEYS = ("model", "objective", "task", "metric")
_NUMBERS = ("k", "value", "ci_low", "ci_high")  # float, NaN where empty
_COUNTS = ("n_prompts", "n_seeds")


def normalise(frame: pd.DataFrame, required=REQUIRED_COLUMNS, what: str = "summary") -> pd.DataFrame:
    """A copy with the types every reader relies on, whether the frame was read from a CSV (all text)
    or built in memory: beta as its label (`gemsft.config.beta_label`, NO_BETA when none), the other
    keys as text, k and the numbers as floats (NaN where empty; an interval column the frame lacks is
    all NaN). Raises ValueError naming the `required` columns the frame lacks."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame; got {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}")
    df = frame.copy()
    df["beta"] = [beta_label(b) for b in df["beta"]]
    for column in _KEYS:
        if column in df:  # the paper's numbers have no model
            df[column] = df[column].astype(str)
    for column in _NUMBERS:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float) if column in df else math.nan
    for column in _COUNTS:
        if column in df:
            df[column] = pd.to_numeric(df[column], errors="coerce")
    return df


def read_csv(path: str | os.PathLike, required=REQUIRED_COLUMNS) -> pd.DataFrame:
    """A summary-shaped CSV (the summary, the paper's numbers), normalised."""
    # keep_default_na=False: the beta label "na" and model names must stay strings.
    return normalise(pd.read_csv(path, dtype=str, keep_default_na=False), required, what=str(path))


def load_summary(path: str | os.PathLike) -> pd.DataFrame:
    return read_csv(path)
