"""Best-of-N and the win rate from a prompt's sample rewards (Section 6, Table 3, Figure 7a).

The exact expectation over all size-N subsets of the samples (order statistics), or the official
script's first N samples (`compat: paper_code`). The win rate is the Bradley-Terry probability
sigmoid(r_best - r_ref); the hard win rate counts r_best > r_ref. The `*_selected` variants pick the
best of N by one score and report another's value of the pick (pick by the reward model, score by the
world's oracle)."""

from __future__ import annotations

import functools
import math
import numpy as np


def _check(rewards, N: int) -> tuple[np.ndarray, int]:
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"rewards must be a non-empty 1-D array (the n sample rewards of one prompt), got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards contain NaN or infinite values")
    n = r.size
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or not 1 <= N <= n:
        raise ValueError(f"best-of-N needs N in 1..n, got N={N!r} with n={n} samples")
    return r, int(N)


@functools.lru_cache(maxsize=4096)
def _max_weights(n: int, N: int) -> np.ndarray:
    """P(the maximum of a uniform size-N subset of n items is the i-th smallest), i = 1..n:
    C(i-1, N-1) / C(n, N). Exact integer binomials, one correctly rounded division each: no overflow
    or cancellation for any n."""
    total = math.comb(n, N)
    w = np.array([math.comb(i - 1, N - 1) / total for i in range(1, n + 1)], dtype=np.float64)
    w.setflags(write=False)
    return w


def _expect_over_max(rewards, N: int, f) -> float:
    r, N = _check(rewards, N)
    sorted_r = np.sort(r)  # ties: equal values in any order give the same expectation of f(max)
    return float(np.dot(_max_weights(r.size, N), f(sorted_r)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def _win(r_best: np.ndarray, ref_reward: float, hard: bool) -> np.ndarray:
    d = np.asarray(r_best, dtype=np.float64) - float(ref_reward)
    if hard:
        return (d > 0).astype(np.float64) + 0.5 * (d == 0)
    return _sigmoid(d)


def expected_best_of_n(rewards, N: int) -> float:
    """E[max reward] over all size-N subsets of the n samples, chosen uniformly (no Monte Carlo)."""
    return _expect_over_max(rewards, N, lambda r: r)


def expected_win_rate(rewards, ref_reward: float, N: int, hard: bool = False) -> float:
    """E over size-N subsets of P(best-of-subset beats the reference): sigmoid(r_best - r_ref)
    (Bradley-Terry), or with hard=True the indicator r_best > r_ref with ties counting 0.5."""
    return _expect_over_max(rewards, N, lambda r: _win(r, ref_reward, hard))


def first_n_best(rewards, N: int) -> float:
    """The official code's BoN@N: the highest reward among the FIRST N samples (compat: paper_code)."""
    r, N = _check(rewards, N)
    return float(np.max(r[:N]))


def first_n_win_rate(rewards, ref_reward: float, N: int, hard: bool = False) -> float:
    """Win rate of the best of the FIRST N samples against the reference (compat: paper_code)."""
    return float(_win(first_n_best(rewards, N), ref_reward, hard))


def _values_of_pick(select, values, N: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(select, values) as float arrays of the same length, checked; N checked against them."""
    s, N = _check(select, N)
    v, _ = _check(values, 1)
    if v.shape != s.shape:
        raise ValueError(f"best-of-N selection: {s.size} selection scores but {v.size} values")
    return s, v, N


def _tie_means(select: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value replaced by the mean over the samples with the same selection score: a tie for the
    best is broken uniformly at random, so the tied samples share the pick's probability equally."""
    _, group, counts = np.unique(select, return_inverse=True, return_counts=True)
    return (np.bincount(group, weights=values) / counts)[group]


def expected_selected(select, values, N: int, f=lambda v: v) -> float:
    """E over size-N subsets of f(value of the subset's highest-`select` sample), exactly: the order
    statistics of `select` weight the values (ties in `select` broken uniformly at random)."""
    s, v, N = _values_of_pick(select, values, N)
    order = np.argsort(s, kind="stable")
    return float(np.dot(_max_weights(s.size, N), _tie_means(s[order], f(v[order]))))


def first_n_selected(select, values, N: int, f=lambda v: v) -> float:
    """f(value of the highest-`select` sample among the FIRST N samples) (compat: paper_code); ties
    in `select` average f over the tied samples."""
    s, v, N = _values_of_pick(select, values, N)
    s, fv = s[:N], np.asarray(f(v[:N]), dtype=np.float64)
    return float(np.mean(fv[s == s.max()]))


def win_against(ref_reward: float, hard: bool = False):
    """The win function of a picked value against the reference: f for the `*_selected` functions."""
    return lambda r: _win(r, ref_reward, hard)
