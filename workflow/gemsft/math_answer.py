"""The number a math response gives as its answer: one extraction for every math scorer (the world's
judge, `gemsft.evaluate.math_accuracy`) and for the GSM8K gold parser (`gemsft.data.gsm8k`).

Default mode, for the answers real models write after the paper's instruction ("please use the
format "The answer is: ..."", Appendix F.3):

* The marker is "the answer is" or "the final answer is", in any case, with or without a colon. Only
  the LAST marker counts: when it is followed by no number the answer is None, never an earlier
  marker's number (a model that restates "The answer is:" and stops has retracted nothing into a
  number, and crediting its first try would score an answer it did not give).
* After that marker, the number inside the first ``\\boxed{...}`` if there is one (the notation that
  says "this is the final answer"), else the first number: words may come between ("The answer is:
  Janet makes $18"), and bold, ``$...$`` and currency marks around it are ignored.
* A number is a sign (``-``, ``+``, U+2212), digits with or without well-formed thousands separators
  (``1,234,567``; LaTeX ``1{,}234``), an optional decimal part, or a simple fraction ``3/4`` or
  ``\\frac{3}{4}`` (value 0.75). It is returned exactly: int when integral, else float.
* Without any marker the fallback is the last number of the text, and the result says so
  (``source == LAST_NUMBER``), so that scorers report marker-based and fallback accuracy apart.

``compat="paper_code"`` is the official GEM scripts' ``extract_answer_number``
(liziniu/GEM, evaluation/utils/gsm8k.py), bugs included: only "The answer is" and "the answer is"
count, the first match of ``[-+]?\\d*[.,/]?\\d+`` after the last of them is taken (so ``1,234,567`` is
1234), and the value is rounded to an integer (``3/4`` -> 1, Python's round-half-to-even). It never
falls back. Where that function raises (a denominator of zeros other than "0"), the official
evaluation loop records no answer, and so does this. Its fractions go through the PyPI `fraction`
package's float arithmetic; here they are exact, which is the same below 2**53 (no answer of a grade
school problem comes near).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from gemsft.config import COMPAT_MODES, PAPER_CODE

#: where an answer was found: after the last marker, or (default mode only) the last number of a text
#: without any marker
MARKER, LAST_NUMBER = "marker", "last_number"


@dataclass(frozen=True)
class MathAnswer:
    value: int | float | None
    source: str | None  # MARKER, LAST_NUMBER, or None: no marker and no number

    @property
    def marker_value(self) -> int | float | None:
        """The value only if the paper's marker gave it (the answer the instruction asked for)."""
        return self.value if self.source == MARKER else None


# "is" not followed by a letter: "the answer isn't 5" is no answer.
_MARKER_RE = re.compile(r"\bthe\s+(?:final\s+)?answer\s+is(?![\w'\u2019])", re.IGNORECASE)
_NUMBER_RE = re.compile(r"""
    (?<![\w.,])                           # not the tail of a word or of another number
    (?P<sign>[-+\u2212])?\$?
    (?: \\[dt]?frac\s*\{\s*(?P<fnum>[0-9]+)\s*\}\s*\{\s*(?P<fden>0*[1-9][0-9]*)\s*\}
      | (?P<num>[0-9]+)/(?P<den>0*[1-9][0-9]*)(?![0-9/]|[.,][0-9])
      | (?P<int>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?P<dec>\.[0-9]+)?
      | (?P<bare_dec>\.[0-9]+)
    )
""", re.VERBOSE)
_BOXED_RE = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_LATEX_THOUSANDS_RE = re.compile(r"(?<=[0-9])(?:\{,\}|\\,)(?=[0-9]{3})")


def _value(m: re.Match) -> Fraction:
    if m.group("fnum") is not None:
        value = Fraction(int(m.group("fnum")), int(m.group("fden")))
    elif m.group("num") is not None:
        value = Fraction(int(m.group("num")), int(m.group("den")))
    elif m.group("int") is not None:
        value = Fraction(m.group("int").replace(",", "") + (m.group("dec") or ""))
    else:
        value = Fraction(m.group("bare_dec"))
    return -value if m.group("sign") in ("-", "\u2212") else value


def _numbers(text: str):
    """The value of each number in `text`, in order."""
    return (_value(m) for m in _NUMBER_RE.finditer(_LATEX_THOUSANDS_RE.sub(",", text)))


def _as_number(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else float(value)


def _first_number(text: str) -> int | float | None:
    return next((_as_number(v) for v in _numbers(text)), None)


def _default(text: str) -> MathAnswer:
    markers = list(_MARKER_RE.finditer(text))
    if markers:
        tail = text[markers[-1].end():]
        boxed = _BOXED_RE.search(tail)
        value = _first_number(boxed.group(1)) if boxed else None
        return MathAnswer(value if value is not None else _first_number(tail), MARKER)
    last = None
    for last in _numbers(text):
        pass
    return MathAnswer(None, None) if last is None else MathAnswer(_as_number(last), LAST_NUMBER)


# The official pattern: optional sign, digits, ONE separator out of ".,/", digits.
_PAPER_NUMBER_RE = re.compile(r"[-+]?\d*[.,/]?\d+")


def _paper_code(text: str) -> int | None:
    _, marker, tail = text.replace("the answer is", "The answer is").rpartition("The answer is")
    match = _PAPER_NUMBER_RE.search(tail) if marker else None
    if match is None:
        return None
    token = match.group()
    try:
        if "/" not in token:
            value = float(token.replace(",", ""))
            return None if math.isinf(value) else round(value)
        numerator, denominator = token.split("/")
        if not any(c.isdigit() for c in numerator):  # "-/4": the official is_number check fails
            return None
        if denominator == "0":
            return round(float(numerator))
        # The `fraction` package raises on "00"; the evaluation loop then records no answer.
        return None if int(denominator) == 0 else round(float(Fraction(int(numerator), int(denominator))))
    except OverflowError:  # beyond float range the official code raises too
        return None


def extract_math_answer_with_source(text: str, compat: str | None = None) -> MathAnswer:
    """The answer of a math response and where it was found (module docstring)."""
    if compat not in COMPAT_MODES:
        raise ValueError(f"compat must be one of {COMPAT_MODES}, not {compat!r}")
    if compat == PAPER_CODE:
        value = _paper_code(text)
        return MathAnswer(value, None if value is None else MARKER)
    return _default(text)


def extract_math_answer(text: str, compat: str | None = None) -> int | float | None:
    """The number a math response gives as its answer, or None: after the last "The answer is", else
    (default mode only) the last number of the text. `compat="paper_code"`: the official scripts'
    extraction, an int. Which way it was found: `extract_math_answer_with_source`."""
    return extract_math_answer_with_source(text, compat).value
