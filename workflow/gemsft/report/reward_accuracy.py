"""The reward model's held-out pair accuracy, shown beside every number the reward model scored.

A best-of-N win rate is only as trustworthy as the reward model that picks and scores the samples. The
chat stage reports a reward model trained by the DAG with its pair accuracy (%) on the chat preference
prompts it held out from training (`gemsft.score.REWARD_MODEL_ACCURACY`), per prompt, so
the summary gives it a bootstrap interval like every other number. A reward model from the hub
(reward_model.pretrained) has no held-out pairs here: then there is nothing to show, and nothing is.
"""

from __future__ import annotations

import pandas as pd

from gemsft.score import REWARD_MODEL_ACCURACY

METRIC = REWARD_MODEL_ACCURACY
TASK = "chat"
#: the column beside the win rates in the tables
TITLE = "RM held-out accuracy"
#: its series in a figure's plotted data (gemsft.report.figures.plotted)
SERIES = "reward model's held-out accuracy"
#: chat metrics the reward model computes (it picks the best of N and scores it against the reference)
SCORED_BY_REWARD_MODEL = frozenset({"win_rate", "hard_win_rate", "bon_reward"})


def accuracy_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The summary rows (already one model's) of the reward model's held-out accuracy; none without it."""
    return rows[(rows["task"] == TASK) & (rows["metric"] == METRIC)]


def figure_accuracy(rows: pd.DataFrame) -> tuple[float, float, float] | None:
    """(value, ci_low, ci_high) for a figure, from one model's summary rows; None without a trained
    reward model. One reward model scores every run, so every run's row has the same value; the
    intervals differ only by their bootstrap draws, and the first run's (in the summary's order) is
    shown."""
    found = accuracy_rows(rows)
    if found.empty:
        return None
    first = found.iloc[0]
    return float(first["value"]), float(first["ci_low"]), float(first["ci_high"])


def accuracy_text(found: tuple[float, float, float]) -> str:
    """"reward model's held-out pair accuracy (chat): 57.1% [42.9, 71.4]"."""
    value, low, high = found
    interval = "" if pd.isna(low) or pd.isna(high) else f" [{low:.1f}, {high:.1f}]"
    return f"reward model's held-out pair accuracy (chat): {value:.1f}%{interval}"
