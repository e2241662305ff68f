"""Diversity metrics beyond the paper's three (gemsft.evaluate.diversity_metrics), against independent
references, and their rows in the diversity stage.

* EAD (Liu et al., ACL 2022): against the formula in float64 as written, ``N / (V * (1 - ((V-1)/V)**C))``,
  against exact rational arithmetic, and against a transcription of Kirk et al. (2023)'s
  implementation (facebookresearch/rlfh-gen-div @ 333c80b, rlvsil/diversity/diversity_metrics.py
  ``ExpectationAdjustedDistinctNgrams`` / ``AveragedExpectationAdjustedDistinctNgrams`` with
  rlvsil/diversity/utils.py ``lines_to_ngrams``). Liu et al.'s own code lives in a Hugging Face Space
  (lsy641/distinct), not on PyPI, and could not be read here.
* The Vendi score (Friedman & Dieng 2023): against the official package ``vendi-score`` 0.0.1
  (``vendi_score.vendi.score_X``, ``score_K``, ``score_dual``; its vendi.py equals 0.0.3's and
  vertaix/Vendi-Score @ c791c30) and closed forms.
* distinct_k (NoveltyBench): against a transcription of NoveltyBench's ``partition_responses``
  (novelty-bench/novelty-bench @ 5b22b53, src/partition.py) and its summary's class count
  (src/summarize.py: ``len(partition_scores)``), with the world's judge as the equivalence test.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from nltk.util import ngrams as nltk_ngrams

from gemsft import metrics as public
from gemsft.data.world import judge
from gemsft.evaluate.diversity import chat_diversity
from gemsft.evaluate.diversity_metrics import ngram_diversity, sbert_diversity_from_embeddings
from gemsft.evaluate.newer_diversity import EAD_VOCAB_SIZE, distinct_k, ead_diversity, novelty_partition, vendi_score
from gemsft.evaluate.stage import write_stage
from gemsft.report.bounds import CEILING, FLOOR, METRIC_BOUNDS, bounds, shared_bound
from gemsft.report.labels import METRIC_NAMES
from gemsft.report.metrics_table import metrics_records
from gemsft.report.summary import summarize

NEW_METRICS = ("ead_diversity", "vendi_score", "distinct_k")
WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "mat", "and", "then", "red", "big", "it", "was"]


def random_responses(rng: random.Random, m: int, max_len: int = 30) -> list[str]:
    """Single-spaced words, no "." or newline: every tokenizer below sees the same tokens."""
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_len))) for _ in range(m)]


# --------------------------------------------------------------------------------------------
# EAD
# --------------------------------------------------------------------------------------------


def ead_as_written(responses: list[str], n: int, vocab_size: int) -> float:
    """The paper's formula in plain float64, n-grams from nltk on whitespace tokens."""
    grams = [g for r in responses for g in nltk_ngrams(r.split(), n)]
    return len(set(grams)) / (vocab_size * (1 - ((vocab_size - 1) / vocab_size) ** len(grams)))


def ead_exact(responses: list[str], n: int, vocab_size: int) -> Fraction:
    grams = [g for r in responses for g in nltk_ngrams(r.split(), n)]
    expected = vocab_size * (1 - Fraction(vocab_size - 1, vocab_size) ** len(grams))
    return Fraction(len(set(grams))) / expected


def kirk_ngrams(lines: list[str], n: int) -> list[list[tuple]]:
    """Transcribed from rlfh-gen-div's utils.lines_to_ngrams: delete "." and newlines, split on single
    spaces, drop empty words, n-grams per line."""
    out = []
    for line in lines:
        words = [w for w in line.replace(".", "").replace("\n", "").split(" ") if w != ""]
        out.append([tuple(words[i:i + n]) for i in range(len(words) - n + 1)])
    return out


def kirk_ead(lines: list[str], n: int, vocab_size: int = 50257) -> float:
    """Transcribed from rlfh-gen-div's ExpectationAdjustedDistinctNgrams (0 on division by zero)."""
    flat = [g for per_line in kirk_ngrams(lines, n) for g in per_line]
    distinct, total = len(set(flat)), len(flat)
    try:
        return distinct / (vocab_size * (1 - ((vocab_size - 1) / vocab_size) ** total))
    except ZeroDivisionError:
        return 0.0


def kirk_averaged_ead(lines: list[str], n_min: int = 1, n_max: int = 5, vocab_size: int = 50257) -> float:
    """AveragedExpectationAdjustedDistinctNgrams: the mean over n = n_min..n_max (its defaults)."""
    return float(np.mean([kirk_ead(lines, n, vocab_size) for n in range(n_min, n_max + 1)]))


def test_ead_matches_the_formula_as_written_and_exact_fractions():
    rng = random.Random(0)
    for trial in range(300):
        responses = random_responses(rng, rng.randint(1, 12))
        n = rng.randint(1, 3)
        if not any(len(r.split()) >= n for r in responses):
            continue
        vocab_size = rng.choice([2, 7, 50, 1000, EAD_VOCAB_SIZE, 128256])
        ours = ead_diversity(responses, n=n, vocab_size=vocab_size)
        assert ours == pytest.approx(ead_as_written(responses, n, vocab_size), rel=1e-9, abs=0), trial
        assert ours == pytest.approx(float(ead_exact(responses, n, vocab_size)), rel=1e-13, abs=0), trial


def test_ead_matches_kirk_et_al_implementation():
    rng = random.Random(1)
    for trial in range(200):
        responses = random_responses(rng, rng.randint(2, 10))
        for n in range(1, 6):
            expected = kirk_ead(responses, n)
            if expected == 0.0:  # no n-grams of this order: the reference says 0, ours raises
                with pytest.raises(ValueError, match="no .*-grams"):
                    ead_diversity(responses, n=n)
                continue
            assert ead_diversity(responses, n=n) == pytest.approx(expected, rel=1e-9, abs=0), (trial, n)
        if all(len(r.split()) >= 5 for r in responses):
            ours = float(np.mean([ead_diversity(responses, n=n) for n in range(1, 6)]))
            assert ours == pytest.approx(kirk_averaged_ead(responses), rel=1e-9)


def test_ead_defaults_and_hand_values():
    assert EAD_VOCAB_SIZE == 50257
    # 4 tokens, 3 distinct, V = 4: expectation 4 * (1 - (3/4)^4) = 175/64
    assert ead_diversity(["x y", "x z"], vocab_size=4) == pytest.approx(3 / (175 / 64), rel=1e-15)
    # V = 1: one type, one expected distinct token whatever C
    assert ead_diversity(["x x x"], vocab_size=1) == 1.0
    # Distinct-1 and EAD count the same (str.split) tokens; EAD only rescales by C / E[distinct].
    texts = ["Of course! Here is one: cherry.", "Of course! Here is one: apple."]
    tokens = [t for r in texts for t in r.split()]
    ratio = len(set(tokens)) / len(tokens)
    assert ngram_diversity(texts, max_n=1) == pytest.approx(100 * ratio)
    # (1 - (1 - 1/V)^C in float64 loses ~1e-12 to cancellation here; the exact value settles it)
    expectation = EAD_VOCAB_SIZE * (1 - Fraction(EAD_VOCAB_SIZE - 1, EAD_VOCAB_SIZE) ** len(tokens))
    assert ead_diversity(texts) == pytest.approx(float(ratio * len(tokens) / expectation), rel=1e-14)


def test_ead_edge_cases():
    one = "the quick brown fox jumps over the lazy dog"
    # One response of all-distinct tokens: about 1, a little above (the expectation is below C).
    assert 1.0 < ead_diversity(["a b c d e f g"]) < 1.0 + 7 / EAD_VOCAB_SIZE
    # Identical responses: EAD falls as the copies add tokens but no new types.
    values = [ead_diversity([one] * m) for m in (1, 2, 4, 16)]
    assert values == sorted(values, reverse=True)
    assert values[-1] == pytest.approx(values[0] / 16, rel=2e-3)  # up to C / 2V = 144 / 100514
    assert ead_diversity(["x"] * 100) == pytest.approx(0.01, rel=1e-2)
    # Length does not bias it the way distinct-1 is biased: all-distinct text scores ~1 at any length.
    assert ead_diversity([" ".join(f"w{i}" for i in range(2000))]) == pytest.approx(1.0, abs=0.03)
    for bad in ({"n": 0}, {"vocab_size": 0}):
        with pytest.raises(ValueError, match="must be >= 1"):
            ead_diversity([one], **bad)
    with pytest.raises(ValueError, match="no 1-grams"):
        ead_diversity(["", "  "])
    with pytest.raises(ValueError, match="no 3-grams"):
        ead_diversity(["a b", "c"], n=3)


# --------------------------------------------------------------------------------------------
# Vendi score
# --------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # vendi-score reads scipy.sparse.csr
def test_vendi_matches_the_official_package():
    vendi = pytest.importorskip("vendi_score.vendi", reason="vendi-score (the dev extra) is not installed")
    rng = np.random.default_rng(0)
    for n, d in [(1, 5), (2, 3), (5, 384), (16, 384), (32, 8), (40, 3)]:
        for scale in (1.0, 1e-3):
            x = rng.normal(size=(n, d)) * scale + (0.5 if n % 2 else 0.0)
            ours = vendi_score(x)
            assert ours == pytest.approx(float(vendi.score_X(x)), rel=1e-10), (n, d)
            unit = x / np.linalg.norm(x, axis=1, keepdims=True)
            assert ours == pytest.approx(float(vendi.score_K(unit @ unit.T)), rel=1e-10), (n, d)
            if n >= d:  # the dual form the official text helper uses when n >= d
                assert ours == pytest.approx(float(vendi.score_dual(x)), rel=1e-8), (n, d)
    # float32 embeddings (what sentence-transformers returns) give the float64 value
    x = rng.normal(size=(8, 16)).astype(np.float32)
    assert vendi_score(x) == pytest.approx(float(vendi.score_X(x.astype(np.float64))), rel=1e-10)


def test_vendi_closed_forms_and_edge_cases():
    # Two unit vectors with cosine c: the eigenvalues of K/2 are (1 +- c)/2.
    for c in (0.0, 0.3, -0.5, 0.99):
        x = np.array([[1.0, 0.0], [c, math.sqrt(1 - c * c)]])
        p = np.array([(1 + c) / 2, (1 - c) / 2])
        assert vendi_score(x) == pytest.approx(math.exp(-sum(q * math.log(q) for q in p if q > 0)), rel=1e-12)
    assert vendi_score(np.eye(7)) == pytest.approx(7.0, rel=1e-12)  # pairwise orthogonal: n
    assert vendi_score(np.tile([[0.3, -1.2, 2.0]], (10, 1))) == pytest.approx(1.0, abs=1e-9)  # identical: 1
    assert vendi_score(np.array([[2.0, 1.0]])) == pytest.approx(1.0)  # one response
    # Two groups of identical, mutually orthogonal responses: 2 effective responses; scale is ignored.
    groups = np.array([[1.0, 0, 0]] * 3 + [[0, 5.0, 0]] * 3)
    assert vendi_score(groups) == pytest.approx(2.0, rel=1e-9)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 4))
    assert vendi_score(x * rng.uniform(0.1, 10, size=(9, 1))) == pytest.approx(vendi_score(x), rel=1e-10)
    assert 1.0 - 1e-9 <= vendi_score(x) <= 9.0 + 1e-9
    for bad in (np.zeros((0, 3)), np.ones(3), np.array([[1.0, np.nan]])):
        with pytest.raises(ValueError, match="vendi_score"):
            vendi_score(bad)
    with pytest.raises(ValueError, match="zero norm"):
        vendi_score(np.array([[1.0, 0.0], [0.0, 0.0]]))
    # the shared normalisation did not change the SBERT metric's contract
    with pytest.raises(ValueError, match=r"sbert_diversity: needs an \(n >= 2, d\)"):
        sbert_diversity_from_embeddings(np.ones((1, 3)))


# --------------------------------------------------------------------------------------------
# distinct_k (NoveltyBench) with the world's judge
# --------------------------------------------------------------------------------------------


def noveltybench_partition(responses: list, equivalent) -> list[int]:
    """Transcribed from NoveltyBench's partition_responses (without asyncio): each unassigned response
    opens a class; later unassigned responses equivalent to the class's first member join it."""
    classes: list[list] = []
    partition = [-1] * len(responses)
    for i in range(len(responses)):
        if partition[i] >= 0:
            continue
        current = [responses[i]]
        partition[i] = len(classes)
        for j in range(i + 1, len(responses)):
            if partition[j] == -1 and equivalent(current[0], responses[j]):
                current.append(responses[j])
                partition[j] = len(classes)
        classes.append(current)
    return partition


def noveltybench_distinct(partition: list[int]) -> int:
    """src/summarize.py's count: len(partition_scores), one score per class, i.e. max(partition) + 1."""
    return max(partition) + 1


FRUIT = {"id": "chat/fruit/red/0", "kind": "fruit", "slot": "red", "prompt": "Name a red fruit.",
         "acceptable": ["apple", "cherry", "strawberry", "raspberry", "tomato"],
         "p": {"apple": 0.4, "cherry": 0.3, "strawberry": 0.1, "raspberry": 0.1, "tomato": 0.1}}


def test_novelty_partition_matches_noveltybench():
    rng = random.Random(2)
    same = lambda a, b: a == b  # noqa: E731
    near = lambda a, b: abs(a - b) <= 1  # noqa: E731 - not transitive: the representative decides
    for _ in range(300):
        keys = [rng.choice("abcde") for _ in range(rng.randint(1, 12))]
        assert novelty_partition(keys, same) == noveltybench_partition(keys, same)
        assert distinct_k(keys) == noveltybench_distinct(noveltybench_partition(keys, same)) == len(set(keys))
        numbers = [rng.randint(0, 6) for _ in range(rng.randint(1, 12))]
        assert novelty_partition(numbers, near) == noveltybench_partition(numbers, near)
    assert novelty_partition([], same) == []


def test_distinct_k_counts_the_acceptable_answers_the_judge_finds():
    texts = ["Of course! Here is one: cherry.", "I would say apple.", "Sure, a banana.",  # banana: not red
             "How about cherry?", "My answer is apple and cherry.", "Hello there."]  # two answers; none
    keys = [judge("chat", FRUIT, t) for t in texts]
    assert keys == ["cherry", "apple", None, "cherry", None, None]
    assert distinct_k(keys) == 2
    acceptable = [t for t, k in zip(texts, keys) if k is not None]
    by_judge = lambda a, b: judge("chat", FRUIT, a) == judge("chat", FRUIT, b)  # noqa: E731
    assert distinct_k(keys) == noveltybench_distinct(noveltybench_partition(acceptable, by_judge))
    assert distinct_k(["apple"] * 8) == 1  # identical answers
    assert distinct_k([judge("chat", FRUIT, "Of course! Here is one: tomato.")] * 3) == 1
    assert distinct_k([None, None]) == 0  # nothing acceptable: no class
    assert distinct_k(FRUIT["acceptable"]) == 5


# --------------------------------------------------------------------------------------------
# The public API and the report's registries
# --------------------------------------------------------------------------------------------


def test_public_api_exports_the_new_metrics():
    for name in ("ead_diversity", "vendi_score", "distinct_k"):
        assert name in public.__all__ and callable(getattr(public, name))


def test_report_knows_the_new_metrics():
    assert all(m in METRIC_BOUNDS and m in METRIC_NAMES for m in NEW_METRICS)
    assert bounds("vendi_score", 16) == (1.0, 16.0) and bounds("distinct_k", 8.0) == (0.0, 8.0)
    assert bounds("vendi_score") == (1.0, None) and bounds("distinct_k", float("nan")) == (0.0, None)
    assert bounds("ead_diversity", 16) == (0.0, None)
    assert shared_bound("vendi_score", 1.0, 1.0 + 0.01 * 15, k=16) == FLOOR
    assert shared_bound("vendi_score", 16.0, 15.9, k=16) == CEILING
    assert shared_bound("vendi_score", 16.0, 15.9) is None  # no k: no ceiling
    assert shared_bound("distinct_k", 0.0, 0.0, k=8) == FLOOR and shared_bound("distinct_k", 8, 8, k=8) == CEILING
    assert shared_bound("distinct_k", 1.0, 3.0, k=8) is None
    assert shared_bound("ead_diversity", 0.0, 0.005) == FLOOR and shared_bound("ead_diversity", 1.0, 1.0) is None


# --------------------------------------------------------------------------------------------
# The diversity stage's rows
# --------------------------------------------------------------------------------------------


class FakeEncoder:
    """Deterministic 'embeddings' so the test checks the bookkeeping, not a model; counts its calls."""

    def __init__(self):
        self.calls = 0

    def encode(self, texts, **kwargs):
        self.calls += 1
        return np.array([[len(t), t.count("a") + 1.0, t.count("e") + 0.5] for t in texts])


def sample_rows(by_prompt: dict[str, list[str]]) -> list[dict]:
    return [{"prompt_id": pid, "sample_index": i, "text": t, "finish_reason": "stop"}
            for pid, texts in by_prompt.items() for i, t in enumerate(texts)]


def rows_named(rows: list[dict], name: str) -> list[dict]:
    return [r for r in rows if r["metric"] == name]


def test_diversity_stage_rows_carry_the_new_metrics(tmp_path):
    other = {**FRUIT, "id": "chat/fruit/red/1"}
    by_prompt = {FRUIT["id"]: ["Of course! Here is one: cherry.", "I would say apple.", "Sure, a banana.",
                               "How about cherry?"],
                 other["id"]: ["Of course! Here is one: tomato."] * 4}
    encoder = FakeEncoder()
    rows, per_prompt = chat_diversity([FRUIT, other], sample_rows(by_prompt), sbert_model=encoder)
    assert encoder.calls == 1  # Vendi reads the embeddings the SBERT diversity already has
    for name in NEW_METRICS:
        assert len(rows_named(per_prompt, name)) == 2 and len(rows_named(rows, name)) == 1
    emb = {pid: FakeEncoder().encode(texts) for pid, texts in by_prompt.items()}
    for row in rows_named(per_prompt, "ead_diversity"):
        assert row["k"] is None and row["value"] == pytest.approx(ead_diversity(by_prompt[row["prompt_id"]]))
    for row in rows_named(per_prompt, "vendi_score"):
        assert row["k"] == 4 and row["value"] == pytest.approx(vendi_score(emb[row["prompt_id"]]))
    distinct = {row["prompt_id"]: row for row in rows_named(per_prompt, "distinct_k")}
    assert distinct[FRUIT["id"]]["value"] == 2 and distinct[other["id"]]["value"] == 1  # identical answers: 1
    assert {row["k"] for row in distinct.values()} == {4}
    vendi = {row["prompt_id"]: row["value"] for row in rows_named(per_prompt, "vendi_score")}
    assert vendi[other["id"]] == pytest.approx(1.0)  # identical responses: 1
    (mean_vendi,) = rows_named(rows, "vendi_score")
    assert mean_vendi["k"] == 4 and mean_vendi["value"] == pytest.approx(np.mean(list(vendi.values())))

    # Outside the world there is no judge: no distinct_k, the other two stay.
    rows_real, per_prompt_real = chat_diversity([FRUIT, other], sample_rows(by_prompt), sbert_model=FakeEncoder(),
                                                world=False)
    assert not rows_named(per_prompt_real, "distinct_k")
    assert rows_named(rows_real, "ead_diversity") and rows_named(rows_real, "vendi_score")

    # The stage JSON reaches results/metrics.csv and results/summary.csv with intervals per prompt.
    run = {"model": "tiny", "objective": "ce", "beta": "na", "seed": 0}
    stage = write_stage(tmp_path / "diversity.json", "diversity", run, rows, per_prompt, {"any": 1})
    table = {(r["metric"], r["k"]) for r in metrics_records([stage])}
    assert {("ead_diversity", None), ("vendi_score", 4), ("distinct_k", 4)} <= table
    summary = {r["metric"]: r for r in summarize([stage], n_resamples=200)}
    for name in NEW_METRICS:
        row = summary[name]
        assert row["n_prompts"] == 2 and row["ci_low"] <= row["value"] <= row["ci_high"]
    assert summary["distinct_k"]["ci_low"] == 1.0 and summary["distinct_k"]["ci_high"] == 2.0
