"""Where a claim's metric cannot go further (its floor and ceiling), and the unit of a difference of
it: the verdicts call a claim untestable when both arms sit at the same bound, and the claims figure
draws differences of different units in different panels.
"""

from __future__ import annotations

from gemsft.report.alignment_tax import PREFIX as TAX_PREFIX

PERCENT = (0.0, 100.0)
#: metric -> (floor, ceiling); None where the metric is unbounded on that side
METRIC_BOUNDS: dict[str, tuple[float, float | None]] = {
    **{m: PERCENT for m in (
        "pass_at_k", "pass_rate", "greedy_accuracy", "majority_accuracy",
        "win_rate", "hard_win_rate", "oracle_win_rate", "oracle_hard_win_rate",
        "ngram_diversity", "self_bleu_diversity", "sbert_diversity",
        # the forgetting scores: the world's probes and the leaderboard tasks, all scaled to 0-100
        "acc", "accuracy", "acc_norm", "mc2", "exact_match")},
    "entropy": (0.0, None),
    # Diversity beyond the paper's three (gemsft.evaluate.diversity_metrics). EAD is a ratio that can
    # pass 1 a little (its expectation is below the n-gram count), so it has no fixed ceiling. The
    # Vendi score is an effective number of distinct responses among n, in [1, n]; distinct_k counts
    # the distinct acceptable answers among k samples, in [0, k] (0: none acceptable). Their rows
    # carry n and k as "k": their ceiling is that k (CEILING_IS_K).
    "ead_diversity": (0.0, None),
    "vendi_score": (1.0, None),
    "distinct_k": (0.0, None),
}
#: metrics whose ceiling is the k of their row (the number of samples they were computed from)
CEILING_IS_K = frozenset({"vendi_score", "distinct_k"})

# A side within this fraction of its metric's range of a bound sits at it: 1 point on a 0-100 scale
# (one problem in a hundred), and for a metric bounded on one side only, that fraction of its unit
# (0.01 nats of entropy: a model sure of almost every token). Two arms that both sit at one bound
# are saturated: neither can show the other's advantage, so their difference is at most the margin
# whatever the objectives do, and its interval, which collapses onto 0, would read as evidence.
AT_BOUND_MARGIN = 0.01

FLOOR, CEILING = "floor", "ceiling"

POINTS, NATS = "percentage points", "nats"
_NAT_METRICS = {"entropy"}


def bounds(metric: str, k: float | None = None) -> tuple[float, float | None] | None:
    """(floor, ceiling) of the metric, None if unknown; for a metric of CEILING_IS_K the ceiling is
    ``k`` when it is given (a number, not NaN), else unknown (None)."""
    if metric not in METRIC_BOUNDS:
        return None
    low, high = METRIC_BOUNDS[metric]
    if metric in CEILING_IS_K and k is not None and k == k:
        high = float(k)
    return low, high


def shared_bound(metric: str, a: float, b: float, k: float | None = None) -> str | None:
    """FLOOR or CEILING when both values sit at that bound of the metric, else None (also for a metric
    with no known bounds). `k`: the row's k, the ceiling of a CEILING_IS_K metric."""
    known = bounds(metric, k)
    if known is None:
        return None
    low, high = known
    margin = AT_BOUND_MARGIN * ((high - low) if high is not None else 1.0)
    if abs(a - low) <= margin and abs(b - low) <= margin:
        return FLOOR
    if high is not None and abs(high - a) <= margin and abs(high - b) <= margin:
        return CEILING
    return None


def difference_unit(metric: str) -> str:
    """The unit of a difference of the metric: nats for entropy, percentage points for the 0-100
    metrics and the alignment tax; the metric's own name for any other."""
    if metric in _NAT_METRICS:
        return NATS
    if metric.startswith(TAX_PREFIX) or METRIC_BOUNDS.get(metric) == PERCENT:
        return POINTS
    return metric
