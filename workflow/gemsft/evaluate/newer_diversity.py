"""Diversity metrics beyond the paper's three (`gemsft.evaluate.diversity_metrics`), on the same
responses and embeddings; the report's tables do not show them, results/metrics.csv and
results/summary.csv do:

* :func:`ead_diversity` - expectation-adjusted distinct-n (Liu et al., ACL 2022), a ratio near 0-1.
* :func:`vendi_score` - the Vendi score (Friedman & Dieng, TMLR 2023) of the Sentence-BERT
  embeddings with the cosine kernel, an effective number of distinct responses in [1, n].
* :func:`distinct_k` - in the world only: NoveltyBench's distinct_k (Zhang et al. 2025) with the
  world's judge as the equivalence test, the number of distinct acceptable answers among k samples.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from gemsft.evaluate.diversity_metrics import _unit_rows

__all__ = ["EAD_VOCAB_SIZE", "distinct_k", "ead_diversity", "novelty_partition", "vendi_score"]


#: EAD's vocabulary size V: GPT-2's 50,257 tokens, the default of Kirk et al. (2023)'s
#: implementation (facebookresearch/rlfh-gen-div, rlvsil/diversity/diversity_metrics.py) and the
#: value in the example of Liu et al.'s official metric. One fixed V for every model, as the official
#: guideline asks of methods compared with each other ("a united value of vocabulary size").
EAD_VOCAB_SIZE = 50257


def ead_diversity(responses: list[str], n: int = 1, vocab_size: int = EAD_VOCAB_SIZE) -> float:
    """Expectation-adjusted distinct-n of one prompt's responses (Liu et al., ACL 2022, "Rethinking and
    Refining the Distinct Metric"), a ratio: about 0-1, higher is more diverse.

    ``EAD = N / (V * (1 - ((V - 1) / V) ** C))``: N distinct n-grams and C n-grams in all over the
    responses together (n-grams never span two responses, as in :func:`ngram_diversity`), divided by
    the number of distinct n-grams C draws from a uniform vocabulary of V would give in expectation,
    so that long outputs are not penalised just for being long as distinct-n penalises them. The
    denominator is evaluated as ``V * -expm1(C * log1p(-1 / V))``, which equals it without the
    cancellation of ``1 - (...) ** C`` for V much larger than C. EAD can exceed 1 (the expectation is
    below C), by at most about C / (2V) while C is small next to V.

    Choices, each the official one or the project's: ``n = 1`` is the metric of Liu et al.'s official
    code (the Hugging Face Space lsy641/distinct that their repository lsy641/Expectation-Adjusted-
    Distinct points to computes EAD for tokens only); Kirk et al. (2023) average the same formula
    over n = 1..5 with the same V (a caller can average this function over ``n``). V is
    :data:`EAD_VOCAB_SIZE` (see there; Liu et al.'s guideline for pretrained models is the largest
    tokenizer vocabulary among the compared models; any fixed V ranks runs with equal C alike).
    Tokens are ``str.split()`` words, case preserved, as in :func:`ngram_diversity`, so EAD and
    distinct-n count the same n-grams (Kirk et al. split on spaces after deleting "." and newlines;
    Liu et al.'s Space tokenises with a copy of sacrebleu's 13a, by its code as quoted elsewhere: the
    Space itself could not be read here). Raises ValueError if ``n < 1``, ``vocab_size < 1`` or there
    are no n-grams at all (Kirk et al.'s code returns 0 there).
    """
    n, vocab_size = operator.index(n), operator.index(vocab_size)
    if n < 1:
        raise ValueError(f"ead_diversity: n must be >= 1, got {n}")
    if vocab_size < 1:
        raise ValueError(f"ead_diversity: vocab_size must be >= 1, got {vocab_size}")
    distinct: set[tuple[str, ...]] = set()
    total = 0
    for response in responses:
        toks = response.split()
        grams = list(zip(*(toks[i:] for i in range(n))))
        total += len(grams)
        distinct.update(grams)
    if total == 0:
        raise ValueError(f"ead_diversity: no {n}-grams in {len(responses)} response(s); "
                         "need at least one response with n words")
    if vocab_size == 1:
        expected = 1.0  # every draw is the one type
    else:
        expected = vocab_size * -math.expm1(total * math.log1p(-1.0 / vocab_size))
    return len(distinct) / expected


def vendi_score(embeddings: np.ndarray) -> float:
    """The Vendi score of one prompt's response embeddings, (n, d), with the cosine similarity kernel.

    Friedman & Dieng, "The Vendi Score: A Diversity Evaluation Metric for Machine Learning" (TMLR
    2023): ``K[i, j] = cos(e_i, e_j)``, ``lambda`` the eigenvalues of ``K / n``, and
    ``VS = exp(-sum_i lambda_i log lambda_i)`` over the positive eigenvalues (0 log 0 = 0; rounding's
    tiny negative ones are dropped), the exponential of the Shannon entropy of the eigenvalues: an
    effective number of distinct responses, 1 when all n are the same direction and n when they are
    pairwise orthogonal. As the official ``vendi_score.vendi.score_X(X)`` (its ``normalize=True``:
    rows scaled to unit norm, so ``K`` is the cosine matrix, then ``score_K``: ``eigvalsh(K / n)``)
    and its text helper ``embedding_vendi_score``, in float64. Not scaled to 0-100: its range is
    [1, n], so it depends on n (the stage's row records n as its ``k``). Raises ValueError for an
    empty, non-2-D or non-finite array, or a zero-norm embedding.
    """
    e = _unit_rows(embeddings, "vendi_score", min_rows=1)
    eigenvalues = np.linalg.eigvalsh((e @ e.T) / e.shape[0])
    positive = eigenvalues[eigenvalues > 0]
    return float(np.exp(-np.sum(positive * np.log(positive))))


def novelty_partition(items: list, equivalent) -> list[int]:
    """NoveltyBench's partition of one prompt's generations into equivalence classes, as its
    ``partition_responses`` (novelty-bench/novelty-bench, src/partition.py): in order, a generation
    not yet in a class opens a new one and every later unassigned generation equivalent to it (the
    class's first member, its representative) joins it. Returns each item's class index, 0, 1, ...
    in order of opening; ``equivalent(a, b)`` is the equivalence test."""
    labels = [-1] * len(items)
    classes = 0
    for i, item in enumerate(items):
        if labels[i] >= 0:
            continue
        labels[i] = classes
        for j in range(i + 1, len(items)):
            if labels[j] == -1 and equivalent(item, items[j]):
                labels[j] = classes
        classes += 1
    return labels


def distinct_k(answer_keys: list[str | None]) -> int:
    """NoveltyBench's distinct_k (Zhang et al. 2025, "NoveltyBench: Evaluating Language Models for
    Humanlike Diversity") with the world's judge as the equivalence test: the number of equivalence
    classes of one prompt's k samples, two samples being equivalent when the judge finds the same
    acceptable answer in both (``answer_keys``: each sample's judged key, None = no acceptable answer).

    NoveltyBench partitions all k generations (:func:`novelty_partition`; its summary's
    ``mean_distinct`` averages the class count over prompts) and weighs quality separately, in its
    utility. Here a sample with no acceptable answer joins no class, since the world cannot say what
    two unacceptable samples have in common: the count is of distinct acceptable answers, in [0, k]
    (0 when none is acceptable, 1 when all give one answer). Key equality is transitive, so this is
    also the number of distinct acceptable keys."""
    keys = [k for k in answer_keys if k is not None]
    labels = novelty_partition(keys, operator.eq)
    return max(labels) + 1 if labels else 0
