"""Sentence BLEU as ``sacrebleu.sentence_bleu`` computes it (sacrebleu 2.x: 13a tokenizer, mixed case),
split into the parts Self-BLEU needs to score every response of a prompt against all the others at
once (`gemsft.evaluate.diversity_metrics.self_bleu_diversity`): the tokens, the clipped n-gram
matches against many references in one pass, the closest reference length, and sacrebleu's own
score arithmetic on those statistics.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

BLEU_ORDER = 4  # sacrebleu's MAX_NGRAM_ORDER


# sacrebleu 2.x's 13a post-tokenizer regexes (TokenizerRegexp), as (pattern, replacement).
_13A_RULES = (
    (r"([\{-\~\[-\` -\&\(-\+\:-\@\/])", r" \1 "),
    (r"([^0-9])([\.,])", r"\1 \2 "),
    (r"([\.,])([^0-9])", r" \1 \2"),
    (r"([0-9])(-)", r"\1 \2 "),
)
# For rules 2-4: which captured group is the punctuation mark that the replacement pads with spaces.
_13A_PADDED_GROUP = (2, 1, 2)
_PAD = {".": " . ", ",": " , ", "-": " - "}


@functools.lru_cache(maxsize=1)
def _tokenizer_parts():
    """(characters padded by 13a's first regex, except space; the other compiled regexes), or None.

    sacrebleu's regexes are used, but applied faster (its ``re.sub`` with a group template calls
    back into Python for every match on Python 3.11):

    * Rule 1 surrounds every character of a fixed ASCII class with spaces, a context-free
      single-character substitution, so it equals ``str.replace(c, f" {c} ")`` for each class
      character present. The space itself is left out: padding a space changes only how many
      spaces separate things, and the later rules treat one space and three alike (a space is a
      non-digit either way and is never ``.``/``,``/``-``), so the final tokens are identical.
    * Rules 2-4 each match two characters and rewrite them as the same two characters with the
      punctuation one (``.``, ``,`` or ``-``) padded by spaces. ``pattern.split`` finds exactly the
      matches ``pattern.sub`` replaces and returns the groups, so padding that group in the split
      list and joining gives the same string with no per-match Python call.

    The tests check the whole tokenizer against sacrebleu's, exhaustively on short strings. If
    sacrebleu's patterns are not the ones this was checked against (a future version), None makes
    the caller fall back to sacrebleu's own tokenizer.
    """
    from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp

    rules = TokenizerRegexp()._re
    if tuple((p.pattern, r) for p, r in rules) != _13A_RULES:
        return None
    first = rules[0][0]
    padded = tuple(chr(c) for c in range(128) if chr(c) != " " and first.fullmatch(chr(c)))
    return padded, tuple((p, g) for (p, _), g in zip(rules[1:], _13A_PADDED_GROUP))


def tokenize_13a(line: str) -> list[str]:
    """Tokens of ``line`` exactly as ``sacrebleu.sentence_bleu`` sees them (13a, mixed case).

    Mirrors ``BLEU._preprocess_segment`` (``rstrip``) + ``Tokenizer13a.__call__`` +
    ``TokenizerRegexp.__call__`` + the ``split()`` of ``extract_all_word_ngrams``, without
    sacrebleu's lru_cache (which would keep every response string alive).
    """
    parts = _tokenizer_parts()
    if parts is None:  # pragma: no cover - only with an unexpected sacrebleu version
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

        return Tokenizer13a()(line.rstrip()).split()
    padded, rules = parts
    line = line.rstrip()
    line = line.replace("<skipped>", "")
    line = line.replace("-\n", "")
    line = line.replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"')
        line = line.replace("&amp;", "&")
        line = line.replace("&lt;", "<")
        line = line.replace("&gt;", ">")
    line = f" {line} "
    for c in padded:
        if c in line:
            line = line.replace(c, f" {c} ")
    for pattern, group in rules:
        pieces = pattern.split(line)  # [text, g1, g2, text, g1, g2, ..., text]
        if len(pieces) > 1:
            pieces[group::3] = map(_PAD.__getitem__, pieces[group::3])
            line = "".join(pieces)
    return line.split()


def bleu_score(correct: list[int], total: list[int], sys_len: int, ref_len: int,
                effective_order: bool) -> float:
    """sacrebleu's own BLEU arithmetic (exp smoothing) on precomputed sufficient statistics."""
    from sacrebleu.metrics.bleu import BLEU

    return BLEU.compute_bleu(correct, total, sys_len, ref_len, smooth_method="exp",
                             effective_order=effective_order, max_ngram_order=BLEU_ORDER).score


def _token_ids(tokens: list[list[str]]) -> np.ndarray:
    """All tokens of the prompt, concatenated, as integer ids (equal ids iff equal strings)."""
    flat = list(itertools.chain.from_iterable(tokens))
    # Python's string hash runs at C speed; a collision (two different strings sharing an id) is
    # detected by counting the distinct strings, and then the ids come from a dict instead.
    hashes = np.fromiter(map(hash, flat), dtype=np.int64, count=len(flat))
    uniq, ids = np.unique(hashes, return_inverse=True)
    if uniq.size != len(set(flat)):  # pragma: no cover - a 64-bit hash collision
        vocab: dict[str, int] = {}
        return np.array([vocab.setdefault(w, len(vocab)) for w in flat], dtype=np.int64)
    return ids.reshape(-1).astype(np.int64)


def clipped_matches(tokens: list[list[str]], ref_of: np.ndarray | None) -> np.ndarray:
    """(m, 4) matrix: for response i and order n, sum over i's n-grams g of min(count_i(g), R_i(g)).

    ``R_i(g)`` is the max count of g over all the other responses (sacrebleu's multi-reference
    clipping) when ``ref_of`` is None, else the count of g in response ``ref_of[i]``.

    Per order n, every n-gram occurrence gets a key (the compact id of the (n-1)-gram at the same
    position, times the vocabulary size, plus the next token), and one sort by (key, response)
    yields the n-gram ids for the next order and the count of each n-gram in each response (runs
    of equal (key, response)). Then per n-gram: the max count, how many responses hold it, and the
    largest count below it; the best other response's count is the max, unless response i is the
    sole holder of the max, in which case it is the second largest.
    """
    m = len(tokens)
    lens = np.array([len(t) for t in tokens], dtype=np.int64)
    tok = _token_ids(tokens)
    N = tok.size
    resp = np.repeat(np.arange(m, dtype=np.int64), lens)
    left = np.repeat(np.cumsum(lens), lens) - np.arange(N, dtype=np.int64)  # tokens from here on
    V = int(tok.max(initial=0)) + 1
    combined_key_fits = (N * V + V) * m < 2**62
    out = np.zeros((m, BLEU_ORDER), dtype=np.int64)
    gid = tok  # compact id of the (n-1)-gram starting at each position (valid where left >= n-1)
    for n in range(1, BLEU_ORDER + 1):
        pos = np.flatnonzero(left >= n)  # positions where an n-gram starts
        if pos.size == 0:
            break
        key = tok[pos] if n == 1 else gid[pos] * V + tok[pos + n - 1]
        r = resp[pos]
        order = np.argsort(key * m + r) if combined_key_fits else np.lexsort((r, key))
        ks, rs = key[order], r[order]
        new_gram = np.ones(ks.size, dtype=bool)
        new_gram[1:] = ks[1:] != ks[:-1]
        gs = np.cumsum(new_gram) - 1  # compact n-gram id, in sorted order
        gid = np.full(N, -1, dtype=np.int64)
        gid[pos[order]] = gs
        new_run = new_gram.copy()
        new_run[1:] |= rs[1:] != rs[:-1]
        run = np.flatnonzero(new_run)  # one run per (n-gram, response) pair
        cnt = np.diff(np.append(run, ks.size))
        run_g, run_r = gs[run], rs[run]
        if ref_of is None:
            first_run = np.flatnonzero(new_gram[run])  # runs are grouped by n-gram
            top1 = np.maximum.reduceat(cnt, first_run)
            is_max = cnt == top1[run_g]
            n_max = np.add.reduceat(is_max.astype(np.int64), first_run)
            below = np.maximum.reduceat(np.where(is_max, 0, cnt), first_run)
            top2 = np.where(n_max >= 2, top1, below)  # best count once one max holder is removed
            ref_cnt = np.where(is_max, top2[run_g], top1[run_g])
        else:
            own = run_r < 2  # only responses 0 and 1 ever serve as the reference
            table = np.zeros((2, int(gs[-1]) + 1), dtype=np.int64)
            table[run_r[own], run_g[own]] = cnt[own]
            ref_cnt = table[ref_of[run_r], run_g]
        out[:, n - 1] = np.bincount(run_r, weights=np.minimum(cnt, ref_cnt), minlength=m)
    return out


def closest_ref_lens(lens: np.ndarray) -> np.ndarray:
    """sacrebleu's ``_get_closest_ref_len`` for each response against all the others."""
    m = lens.size
    diff = np.abs(lens[:, None] - lens[None, :])
    key = diff * (int(lens.max()) + 1) + lens[None, :]  # closest first, then the shorter
    key[np.arange(m), np.arange(m)] = np.iinfo(np.int64).max
    return lens[np.argmin(key, axis=1)]
