"""Math (Appendix F.3, Table 4): greedy accuracy, majority vote and pass rate over n samples.

Answers come from `gemsft.math_answer.extract_math_answer_with_source`, the one extraction
of every math scorer. The headline metrics count only answers given after the paper's marker ("The
answer is: ..."); the `_fallback` variants (default mode) also take the last number of a response
without the marker, so how much a model loses by ignoring the format is visible:

* ``greedy_accuracy``: correct greedy answers over all questions; ``greedy_accuracy_valid``: over the
  questions whose greedy response gave an answer (only those have a per-question row; its
  `n_prompts` is their number), the official script's other denominator ("Acc over N valid answers").
* ``majority_accuracy`` and ``pass_rate`` (k = n samples per question).
* ``greedy_accuracy_fallback``, ``majority_accuracy_fallback``, ``pass_rate_fallback``: default mode only.

Default mode compares answers exactly as numbers against the record's `answer`, and a majority vote
ignores responses without an answer. ``compat: paper_code`` is the official evaluation
(liziniu/GEM, evaluation/evaluation_gsm8k*.py): its extraction (integers, rounded), the gold
re-parsed from the record's `reference` solution as the official scripts parse it
(`gemsft.data.gsm8k.parse_final_answer`), and a vote in which "no answer" is a candidate.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from gemsft.data.gsm8k import parse_final_answer
from gemsft.math_answer import PAPER_CODE, extract_math_answer_with_source
from gemsft.evaluate.stage import mean_rows, metric, truncation_rows


def is_correct(predicted: float | None, gold: float | None, compat: str | None = None) -> bool:
    if predicted is None or gold is None:
        return False
    if compat == PAPER_CODE:
        return round(predicted) == round(gold)
    return predicted == gold


def gold_answer(record: dict, compat: str | None = None) -> float:
    """The record's answer; under paper_code, the official parse of its `reference` solution where
    it has one (GSM8K row 611, "#### 1,450,000", is 1450 there)."""
    if compat != PAPER_CODE or not record.get("reference"):
        return float(record["answer"])
    gold = parse_final_answer(record["reference"], compat)
    if gold is None:
        raise ValueError(f"math record {record['id']!r}: the official parser finds no answer in its reference")
    return gold


def evaluate_math(records: list[dict], greedy: list[dict], samples: list[dict], task: str = "math",
                  compat: str | None = None) -> tuple[list[dict], list[dict]]:
    """(rows, per_prompt) for the metrics of the module docstring (k = n samples per question), and
    the percentage of truncated samples (the n samples and the greedy answer together)."""
    by_prompt = defaultdict(list)
    for row in samples:
        by_prompt[row["prompt_id"]].append(row)
    greedy_text = {row["prompt_id"]: row["text"] for row in greedy}
    per_prompt = []
    for record in records:
        pid = record["id"]
        if pid not in greedy_text or pid not in by_prompt:
            raise ValueError(f"math samples are missing prompt {pid!r}")
        gold = gold_answer(record, compat)
        first = extract_math_answer_with_source(greedy_text[pid], compat)
        answers = [extract_math_answer_with_source(r["text"], compat)
                   for r in sorted(by_prompt[pid], key=lambda r: r["sample_index"])]
        n = len(answers)
        greedy_ok = 100.0 * is_correct(first.marker_value, gold, compat)
        per_prompt += [metric(task, "greedy_accuracy", greedy_ok, prompt_id=pid),
                       *_vote_rows(task, pid, [a.marker_value for a in answers], gold, compat, "")]
        # Only answered questions have a row, so a run that never answers has no such metric rather
        # than a NaN in results/metrics.csv.
        if first.marker_value is not None:
            per_prompt.append(metric(task, "greedy_accuracy_valid", greedy_ok, prompt_id=pid))
        if compat is None:
            per_prompt += [metric(task, "greedy_accuracy_fallback", 100.0 * is_correct(first.value, gold),
                                  prompt_id=pid),
                           *_vote_rows(task, pid, [a.value for a in answers], gold, compat, "_fallback")]
    per_prompt += truncation_rows(task, [record["id"] for record in records], [*samples, *greedy])
    return mean_rows(per_prompt), per_prompt


def _vote_rows(task: str, pid: str, values: list, gold, compat: str | None, suffix: str) -> list[dict]:
    n = len(values)
    return [metric(task, f"majority_accuracy{suffix}", 100.0 * is_correct(majority_vote(values, compat), gold, compat),
                   n, prompt_id=pid),
            metric(task, f"pass_rate{suffix}", 100.0 * any(is_correct(a, gold, compat) for a in values), n,
                   prompt_id=pid)]


def majority_vote(answers: Sequence[float | None], compat: str | None = None) -> float | None:
    """Most common answer (GSM8K majority@k, e.g. maj@16 in the paper's Table 4); ties go to the
    answer that occurred first.

    Default: answers are compared with ``==``/hash (so 3 and 3.0 are the same vote); None and NaN are
    abstentions; None if there is no answer at all. ``compat="paper_code"`` (the official
    ``calculate_accuracy_voting``): answers are rounded to integers before voting and None is a vote
    like any other, so a majority of unreadable responses makes the question wrong.
    """
    if compat == PAPER_CODE:
        votes = [a if a is None else round(a) for a in answers]
    else:
        votes = [a for a in answers if a is not None and not (isinstance(a, float) and math.isnan(a))]
    counts: dict[float | None, int] = {}
    for a in votes:
        counts[a] = counts.get(a, 0) + 1
    best, best_count = None, 0
    for a, c in counts.items():  # insertion order = first occurrence
        if c > best_count:
            best, best_count = a, c
    return best

