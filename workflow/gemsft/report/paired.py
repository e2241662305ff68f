"""The paired bootstrap of a difference between two arms (runs), the statistic behind every claim's
verdict (`gemsft.report.verdicts`).

An arm is one run (objective and beta) with one or more training seeds; each seed has per-item
values of a metric (the `per_prompt` rows every evaluation stage keeps). Seeds are paired by seed
value, and an arm with a single seed (the pre-trained base model) with every seed of the other arm.
Within a seed pair the items are paired by id, over the items both arms answered.

Statistic: the mean over seed pairs of link(weighted mean of A) - link(weighted mean of B) over the
shared items; with several strata (the alignment tax over several forgetting tasks) a pair's
difference is the mean of its strata's. Interval: the percentile interval of a two-level bootstrap,
seed pairs resampled with replacement, then the items of each drawn pair with the same indices for
both arms, so what the two arms share (an item's difficulty) cancels out of the difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# `gemsft.evaluate.stage.LINKS`, vectorised over bootstrap replicates.
LINKS = {None: lambda x: x, "exp": np.exp}

# Bootstrap replicates are drawn in chunks of at most this many (replicate, item) cells, so a
# forgetting task with tens of thousands of documents does not hold resamples x items indices at once.
CHUNK_CELLS = 1 << 22


@dataclass(frozen=True)
class Items:
    """One seed's per-item values of one metric: {item id: value}, {item id: weight} (1 where the stage
    kept none) and the stage's link ("exp" for perplexity, None for a plain mean)."""

    values: Mapping[str, float]
    weights: Mapping[str, float]
    link: str | None = None

    @classmethod
    def from_rows(cls, rows: Mapping[str, dict]) -> Items:
        """From a stage's per-prompt rows of one (task, metric, k), keyed by prompt id."""
        first = next(iter(rows.values()), {})
        return cls({pid: float(r["value"]) for pid, r in rows.items()},
                   {pid: float(r.get("weight", 1.0)) for pid, r in rows.items()}, first.get("link"))


@dataclass(frozen=True)
class Stratum:
    """The items both arms answered, in one order: values and weights of A and of B."""

    a: np.ndarray
    wa: np.ndarray
    b: np.ndarray
    wb: np.ndarray
    link: str | None = None

    def __len__(self) -> int:
        return len(self.a)


@dataclass(frozen=True)
class PairedEstimate:
    value_a: float  # mean over seed pairs of A's statistic on the shared items
    value_b: float
    difference: float  # value_a - value_b
    ci_low: float
    ci_high: float
    n_items: int  # shared items per seed pair (summed over strata), mean over pairs
    n_seeds: int  # seed pairs


def pair_seeds(a: Mapping[int, T], b: Mapping[int, T]) -> list[tuple[T, T]]:
    """The seed pairs of two arms ({seed: anything}): by seed value; a single-seed arm with every seed
    of the other. Empty when two multi-seed arms share no seed."""
    if len(a) == 1 or len(b) == 1:
        return [(a[sa], b[sb]) for sa in sorted(a) for sb in sorted(b)]
    return [(a[s], b[s]) for s in sorted(set(a) & set(b))]


def paired_stratum(a: Items, b: Items) -> Stratum:
    """A and B on the items both have a finite value for, sorted by id (empty when none)."""
    if a.link != b.link:
        raise ValueError(f"the two arms' items have different links ({a.link!r} and {b.link!r})")
    if a.link not in LINKS:
        raise ValueError(f"unknown link {a.link!r}; expected one of {', '.join(map(repr, LINKS))}")
    shared = sorted(pid for pid in set(a.values) & set(b.values)
                    if not math.isnan(a.values[pid]) and not math.isnan(b.values[pid]))

    def array(mapping):
        return np.array([mapping[pid] for pid in shared], dtype=float)

    return Stratum(array(a.values), array(a.weights), array(b.values), array(b.weights), a.link)


def _statistic(values: np.ndarray, weights: np.ndarray, link: str | None) -> np.ndarray:
    """link(weighted mean) over the last axis."""
    return LINKS[link]((values * weights).sum(-1) / weights.sum(-1))


def _point(pair: list[Stratum]) -> tuple[float, float]:
    """(A, B) of one seed pair: the mean over strata of each arm's statistic."""
    a = np.mean([_statistic(s.a, s.wa, s.link) for s in pair])
    b = np.mean([_statistic(s.b, s.wb, s.link) for s in pair])
    return float(a), float(b)


def _replicates(pair: list[Stratum], draws: int, rng: np.random.Generator) -> np.ndarray:
    """`draws` bootstrap replicates of one seed pair's difference: each stratum's items resampled with
    replacement, the same indices for A and B."""
    out = np.zeros(draws)
    for s in pair:
        n = len(s)
        chunk = max(1, CHUNK_CELLS // n)
        for start in range(0, draws, chunk):
            stop = min(draws, start + chunk)
            idx = rng.integers(0, n, size=(stop - start, n))
            out[start:stop] += (_statistic(s.a[idx], s.wa[idx], s.link)
                                - _statistic(s.b[idx], s.wb[idx], s.link))
    return out / len(pair)


def paired_bootstrap(pairs: list[list[Stratum]], n_resamples: int = 1000, level: float = 0.95,
                     rng: np.random.Generator | None = None) -> PairedEstimate:
    """Point estimate and percentile interval of A - B over `pairs` (seed pairs, each a list of
    non-empty strata)."""
    if not pairs:
        raise ValueError("the paired bootstrap needs at least one seed pair")
    if any(not pair or any(len(s) == 0 for s in pair) for pair in pairs):
        raise ValueError("every seed pair needs at least one stratum with shared items")
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError(f"bootstrap_resamples must be at least 1, got {n_resamples}")
    rng = rng or np.random.default_rng(0)
    points = np.array([_point(pair) for pair in pairs])
    value_a, value_b = (float(x) for x in points.mean(axis=0))
    n_pairs = len(pairs)
    # Replicate r averages n_pairs slots; slot j holds seed pair picks[r, j] with its own resample of
    # that pair's items (a pair drawn twice is resampled twice).
    picks = rng.integers(0, n_pairs, size=(n_resamples, n_pairs)) if n_pairs > 1 \
        else np.zeros((n_resamples, 1), dtype=int)
    stats = np.zeros(n_resamples)
    for slot in range(picks.shape[1]):
        for p in range(n_pairs):
            rows = np.flatnonzero(picks[:, slot] == p)
            if len(rows):
                stats[rows] += _replicates(pairs[p], len(rows), rng)
    stats /= picks.shape[1]
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    n_items = int(np.mean([sum(len(s) for s in pair) for pair in pairs]))
    return PairedEstimate(value_a, value_b, float(np.mean(points[:, 0] - points[:, 1])), float(low), float(high),
                          n_items, n_pairs)
