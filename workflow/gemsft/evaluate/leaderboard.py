"""Scoring the six Open LLM Leaderboard tasks (forgetting with real data): lm-eval's results as the
stage's rows, and per-document rows that average to them."""

from __future__ import annotations

import os

from gemsft import files
from gemsft.data.leaderboard import LEADERBOARD_TASKS, MMLU, MMLU_SUBJECTS, mmlu_task, primary_metrics


def task_label(task: str) -> str:
    """The name a leaderboard task has in gemsft's metrics (`gemsft_arc_challenge` -> `arc_challenge`)."""
    return task.removeprefix("gemsft_")


def metric_name(task: str) -> str:
    """The leaderboard metric of `task` without its lm-eval filter ("exact_match,strict-match" -> "exact_match")."""
    return LEADERBOARD_TASKS[task][1].partition(",")[0]


def score_rows(tidy: dict) -> list[dict]:
    """Stage rows (percent) of lm-eval's aggregate leaderboard scores (`forgetting.tidy_results`)."""
    from gemsft.evaluate.forgetting import primary_scores
    from gemsft.evaluate.stage import metric

    return [metric(task_label(task), metric_name(task), 100.0 * value)
            for task, value in primary_scores(tidy, primary_metrics()).items()]


def document_rows(samples_jsonl: str | os.PathLike) -> list[dict]:
    """Per-document rows (percent) of each leaderboard task's metric from lm-eval's samples file, for
    bootstrap intervals, labelled `task_label(task)`. Their mean per task is the leaderboard score:
    MMLU's documents are weighted 1 / (documents of their subject), so it is the unweighted mean of the
    57 subject accuracies; GSM8K keeps the strict-match filter."""
    from gemsft.evaluate.forgetting import document_rows as task_rows

    records = files.read_jsonl(samples_jsonl)
    rows = []
    for task, (_, metric) in LEADERBOARD_TASKS.items():
        name, _, filter_name = metric.partition(",")
        if task != MMLU:
            rows += task_rows(records, task, task_label(task), (name,), filter_name=filter_name or None)
            continue
        for subject in MMLU_SUBJECTS:
            subject_rows = task_rows(records, mmlu_task(subject), task_label(MMLU), (name,),
                                     prompt_prefix=f"{subject}/")
            rows += [{**row, "weight": 1.0 / len(subject_rows)} for row in subject_rows]
    return rows
