"""An independent reference of the official GEM math evaluation (liziniu/GEM @e5b1430), for the tests
of `compat: paper_code`.

Written from reading the official files, not from our implementation: each function's docstring
names the official file and function whose behaviour it transcribes. The official code imports
`Fraction` from the PyPI package `fraction` (not the standard library's `fractions`); its
string constructor turns each side into a float, reads the float's decimal expansion back as a
ratio and reduces products with float division; `_fraction_package_value` follows those steps, so
it also matches the package where its arithmetic is inexact (integers of 2**53 and more).
"""

from __future__ import annotations

import re
import unicodedata

# evaluation/utils/gsm8k.py, extract_answer_number: the pattern searched after the marker.
OFFICIAL_NUMBER_PATTERN = r"[\-+]?\d*[\.,/]?\d+"
# evaluation/evaluation_gsm8k_voting.py, calculate_accuracy_voting: default depths.
OFFICIAL_DEPTHS = (1, 4, 8, 16, 32)


class OfficialError(Exception):
    """Where the official function raises (its evaluation loop then records no answer)."""


def _is_number(s: str) -> bool:
    """evaluation/utils/gsm8k.py, is_number: float() works, or s is one numeric unicode character."""
    try:
        float(s)
        return True
    except ValueError:
        pass
    try:
        unicodedata.numeric(s)
        return True
    except (TypeError, ValueError):
        return False


def _gcd(a: int, b: int) -> int:
    """PyPI `fraction` 2.2.0, Fraction._gcd: Euclid with Python's % (a sign follows the divisor)."""
    while b != 0:
        a, b = b, a % b
    return a


def _reduced(numerator: int, denominator: int) -> tuple[int, int]:
    """PyPI `fraction` 2.2.0, Fraction.__mul__ by 1/1: both sides divided by their gcd in FLOAT
    division, then truncated to int (exact below 2**53 only)."""
    g = _gcd(numerator, denominator)
    return int(numerator / g), int(denominator / g)


def _from_float(x: float) -> tuple[int, int]:
    """PyPI `fraction` 2.2.0, Fraction(float) via Fraction.fromdecimal: as many decimal places as
    str(x) has characters after its '.' (the whole string when it has none, e.g. '1e+20'), the scaled
    value rounded to an int, then reduced. Raises OverflowError for infinities, as the package does."""
    text = str(float(x))
    places = len(text[text.find(".") + 1:])
    return _reduced(int(round(x * 10 ** places)), 10 ** places)


def _fraction_package_value(numerator: str, denominator: str) -> float:
    """PyPI `fraction` 2.2.0, Fraction("n/d") as the official code uses it: each side a float turned
    into a ratio, the first multiplied by the reciprocal of the second (a zero numerator there raises),
    the product reduced; the official code then divides its two ints."""
    top, bottom = _from_float(float(numerator)), _from_float(float(denominator))
    if bottom[0] == 0:
        raise OfficialError("Denominator cannot be 0")
    n, d = _reduced(top[0] * bottom[1], top[1] * bottom[0])
    return n / d


def official_extract(completion: str):
    """evaluation/utils/gsm8k.py, extract_answer_number.

    Lower-case "the answer is" becomes "The answer is"; the text is split on "The answer is" and the
    last piece searched for the official pattern. A match with "/" is a fraction (None unless both
    sides are numbers; a denominator written "0" gives the rounded numerator); otherwise the match,
    commas removed, as a float (None if infinite). The result is Python's round() of the value: an
    int. Raises OfficialError where the official function raises."""
    pieces = completion.replace("the answer is", "The answer is").split("The answer is")
    if len(pieces) < 2:
        return None
    found = re.search(OFFICIAL_NUMBER_PATTERN, pieces[-1].strip())
    if not found:
        return None
    try:
        return _value_of(found.group())
    except OverflowError as why:  # an infinity reaching round() or the fraction package
        raise OfficialError(str(why)) from None


def _value_of(token: str):
    """The rest of extract_answer_number, from the matched token on."""
    if "/" in token:
        numerator, denominator = token.split("/")[0], token.split("/")[1]
        if not (_is_number(denominator) and _is_number(numerator)):
            return None
        if denominator == "0":
            return round(float(numerator.replace(",", "")))
        return round(float(_fraction_package_value(numerator, denominator)))
    value = float(token.replace(",", ""))
    if value == float("inf"):
        return None
    return round(value)  # -inf passes the official check and fails here


def official_extract_in_loop(completion: str):
    """evaluation/evaluation_gsm8k.py and evaluation_gsm8k_voting.py, main: a model answer whose
    extraction raises is recorded as None."""
    try:
        return official_extract(completion)
    except OfficialError:
        return None


def official_label(solution: str):
    """evaluation/evaluation_gsm8k.py and evaluation_gsm8k_voting.py, main: the gold answer is the
    extraction of the dataset's solution with "####" replaced by "The answer is:"."""
    return official_extract(solution.replace("####", "The answer is:"))


def official_greedy_accuracy(responses: list[str], solutions: list[str]) -> tuple[float, float, int]:
    """evaluation/evaluation_gsm8k.py, main: (accuracy over valid answers, accuracy over all answers,
    number of valid answers), as fractions in [0, 1]. Valid: the extraction gave a number; correct:
    it equals the label's extraction."""
    valid = correct = 0
    for response, solution in zip(responses, solutions, strict=True):
        answer = official_extract_in_loop(response)
        if answer is not None:
            valid += 1
            correct += answer == official_label(solution)
    return (correct / valid if valid else float("nan")), correct / len(responses), valid


def _most_common(votes: list):
    """collections.Counter(votes).most_common(1)[0][0]: the most frequent vote, ties to the vote seen
    first (Counter keeps first-insertion order and max() keeps the first maximum); None is a vote."""
    tally: dict = {}
    for vote in votes:
        tally[vote] = tally.get(vote, 0) + 1
    best = None
    for vote, count in tally.items():
        if best is None or count > tally[best[0]]:
            best = (vote,)
    return best[0]


def official_voting(reference, candidates: list, depths=OFFICIAL_DEPTHS) -> tuple[list[bool], list[bool]]:
    """evaluation/evaluation_gsm8k_voting.py, calculate_accuracy_voting: for each depth up to the
    number of candidates (stopping at the first larger one), whether the most common of the first
    `depth` candidates equals the reference (majority), and whether the reference is among them
    (best-of-n). Candidates are the loop's extractions: rounded ints, or None."""
    majority, best_of_n = [], []
    for depth in depths:
        if depth > len(candidates):
            break
        head = candidates[:depth]
        majority.append(_most_common(head) == reference)
        best_of_n.append(any(c == reference for c in head))
    return majority, best_of_n
