"""GSM8K solutions with their final answer rewritten in the forms models write, for the math tests
(tests/test_math_answer.py) and the default-vs-compat measurement (benchmarks/math_compat_effect.py).

Every value is known by construction from the solution's '#### n' line, never from the extractor."""

from __future__ import annotations

import random
from fractions import Fraction

from gemsft.math_answer import LAST_NUMBER, MARKER


def perturbations(solution: str) -> list[tuple[str, str, int | float | None, str | None]]:
    """(form, response, default value, default source): the solution's reasoning followed by its
    answer written in one of the forms models use. Values come from the '#### n' line, not from the
    extractor."""
    body, last = solution.rsplit("\n", 1)
    written = last.removeprefix("####").strip()
    n = int(written.replace(",", ""))
    a, sign = abs(n), "-" if n < 0 else ""
    forms = [
        ("paper", f"The answer is: {written}", n, MARKER),
        ("bold", f"The answer is: **{n}**", n, MARKER),
        ("boxed", f"The answer is: $\\boxed{{{n}}}$", n, MARKER),
        ("words", f"The answer is: in total that makes {n:,} altogether.", n, MARKER),
        ("plus", f"The answer is: +{a}", a, MARKER),
        ("minus", f"The answer is: -{a}", -a, MARKER),
        ("thousands", f"The answer is: {n:,}", n, MARKER),
        ("dollars", f"The answer is: ${n:,}.00", n, MARKER),
        ("lowercase", f"So the answer is {n}.", n, MARKER),
        ("upper", f"THE ANSWER IS: {n}", n, MARKER),
        ("final_boxed", f"The final answer is $\\boxed{{{n:,}}}$", n, MARKER),
        ("trailing_marker", f"The answer is: {n}.\nLet me double-check.\nThe answer is:", None, MARKER),
        ("no_marker", f"So the result is {n}.", n, LAST_NUMBER),
        ("half", f"The answer is: {2 * n + 1}/2", float(Fraction(2 * n + 1, 2)), MARKER),
        ("decimal", f"The answer is: {n}.5", float(f"{n}.5"), MARKER),
        ("frac_latex", f"The answer is: ${sign}\\frac{{{2 * a}}}{{2}}$", n, MARKER),
    ]
    return [(form, f"{body}\n{text}", value, source) for form, text, value, source in forms]


def gold_from_file(solution: str) -> int:
    return int(solution.rsplit("####", 1)[1].strip().replace(",", ""))


def sampled_responses(records: list[dict], seed: int, n: int = 16) -> tuple[dict, dict]:
    """({id: greedy entry}, {id: n sample entries}) of GSM8K records ({id, reference}), entries as
    `perturbations` gives them. The greedy response is the record's own solution in form i mod 16;
    each sample is, with probability 1/2, its own solution and otherwise another record's (a wrong
    answer), in a random form."""
    rng = random.Random(seed)
    forms = len(perturbations(records[0]["reference"]))
    greedy, samples = {}, {}
    for i, record in enumerate(records):
        own = perturbations(record["reference"])
        other = perturbations(records[(i + 1 + rng.randrange(len(records) - 1)) % len(records)]["reference"])
        greedy[record["id"]] = own[i % forms]
        samples[record["id"]] = [(own if rng.random() < 0.5 else other)[rng.randrange(forms)] for _ in range(n)]
    return greedy, samples
