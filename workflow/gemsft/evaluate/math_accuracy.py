"""Math (Appendix F.3, Table 4): greedy accuracy, majority vote and pass rate over 16 samples.

Answers are the number after the last "The answer is:"; they are compared exactly as numbers. The
official script rounds both sides to integers first (`compat: paper_code`).
"""

from __future__ import annotations

from collections import defaultdict

from gemsft.evaluate.stage import mean_rows, metric, truncation_rows
from gemsft.data.world.arithmetic import extract_answer

import math
from collections.abc import Sequence


def is_correct(predicted: float | None, gold: float, compat: str | None = None) -> bool:
    if predicted is None:
        return False
    if compat == "paper_code":
        return round(predicted) == round(gold)
    return predicted == gold


def evaluate_math(records: list[dict], greedy: list[dict], samples: list[dict], task: str = "math",
                  compat: str | None = None) -> tuple[list[dict], list[dict]]:
    """(rows, per_prompt) for greedy accuracy, majority@n and pass@n (n = samples per question), and
    the percentage of truncated samples (the n samples and the greedy answer together)."""
    by_prompt = defaultdict(list)
    for row in samples:
        by_prompt[row["prompt_id"]].append(row)
    greedy_text = {row["prompt_id"]: row["text"] for row in greedy}
    per_prompt = []
    for record in records:
        pid, gold = record["id"], float(record["answer"])
        if pid not in greedy_text or pid not in by_prompt:
            raise ValueError(f"math samples are missing prompt {pid!r}")
        answers = [extract_answer(r["text"]) for r in sorted(by_prompt[pid], key=lambda r: r["sample_index"])]
        n = len(answers)
        per_prompt += [
            metric(task, "greedy_accuracy", 100.0 * is_correct(extract_answer(greedy_text[pid]), gold, compat),
                   prompt_id=pid),
            metric(task, "majority_accuracy", 100.0 * is_correct(majority_vote(answers), gold, compat), n,
                   prompt_id=pid),
            metric(task, "pass_rate", 100.0 * any(is_correct(a, gold, compat) for a in answers), n, prompt_id=pid),
        ]
    per_prompt += truncation_rows(task, [record["id"] for record in records], [*samples, *greedy])
    return mean_rows(per_prompt), per_prompt


def majority_vote(answers: Sequence[float | None]) -> float | None:
    """Most common non-None answer (GSM8K majority@k, e.g. maj@16 in the paper's Table 1).

    Answers are compared with ``==``/hash (so 3 and 3.0 are the same vote); None and NaN are
    abstentions. Ties go to the answer that occurred first; None if there is no answer at all.
    """
    counts: dict[float, int] = {}
    for a in answers:
        if a is None or (isinstance(a, float) and math.isnan(a)):
            continue
        counts[a] = counts.get(a, 0) + 1
    best, best_count = None, 0
    for a, c in counts.items():  # insertion order = first occurrence
        if c > best_count:
            best, best_count = a, c
    return best
