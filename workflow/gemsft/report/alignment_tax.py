"""The alignment tax (paper Section 6.2), defined once: for every forgetting score of a fine-tuned run
(the knowledge stage: the world's probes or the leaderboard tasks), the base model's score minus the
run's, on the same task, metric and k. Positive means forgotten.

results/metrics.csv lists it per seed, the summary bootstraps it paired over documents, and the
alignment-tax table averages it over the forgetting scores, all through this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gemsft.config import BASE_OBJECTIVE

FORGETTING_STAGE = "knowledge"
PREFIX = "alignment_tax_"  # the tax of metric "acc" is the row "alignment_tax_acc"
AVERAGE = f"{PREFIX}average"  # the paper's headline: the mean tax over the forgetting scores


def alignment_tax(base: float, tuned: float) -> float:
    return base - tuned


def tax_metric(metric: str) -> str:
    return f"{PREFIX}{metric}"


def taxed_metric(metric: str) -> str | None:
    """The forgetting metric a tax row is of ("alignment_tax_acc" -> "acc"); None for other rows and
    for the average, which is of no single metric."""
    if not metric.startswith(PREFIX) or metric == AVERAGE:
        return None
    return metric[len(PREFIX):]


def mean_tax(taxes: list[float]) -> float:
    """The average over the forgetting scores; a mean of bootstrap intervals is not an interval of the
    mean, so it has none."""
    return sum(taxes) / len(taxes)


def _score_key(stage: dict, row: dict) -> tuple:
    return (stage["run"]["model"], row["task"], row["metric"], row["k"])


def paired_rows(stages: Iterable[dict]) -> Iterator[tuple[dict, dict, dict, dict]]:
    """(tuned stage, tuned row, base stage, base row) for every forgetting row of a fine-tuned run that
    the base model of the same model name also scored; tuned stages in the order given. The base model
    is evaluated once (seed 0); were there several, the lowest seed is the reference."""
    forgetting = [s for s in stages if s.get("stage") == FORGETTING_STAGE]
    base: dict[tuple, tuple[dict, dict]] = {}
    for stage in forgetting:
        if stage["run"]["objective"] != BASE_OBJECTIVE:
            continue
        for row in stage["rows"]:
            key = _score_key(stage, row)
            if key not in base or stage["run"]["seed"] < base[key][0]["run"]["seed"]:
                base[key] = (stage, row)
    for stage in forgetting:
        if stage["run"]["objective"] == BASE_OBJECTIVE:
            continue
        for row in stage["rows"]:
            found = base.get(_score_key(stage, row))
            if found is not None:
                yield stage, row, *found


def document_taxes(base_documents: dict[str, dict], tuned_documents: dict[str, dict]) -> dict[str, float]:
    """{document id: tax} over the documents both models were scored on (per-prompt rows by id), so a
    bootstrap resamples each document's two scores together."""
    shared = sorted(set(base_documents) & set(tuned_documents))
    return {pid: alignment_tax(base_documents[pid]["value"], tuned_documents[pid]["value"]) for pid in shared}
