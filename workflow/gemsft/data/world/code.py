"""Code family: tiny Python functions from a one-line spec, each with unit tests and several
correct implementations (the world's HumanEval).

Graded difficulty, as in real code corpora and benchmarks: pretraining text holds buggy as well
as correct implementations (each function its own bug rate), SFT covers only some functions, and
the evaluation asks for functions held out of SFT: most were seen only in pretraining, some never
(their constants must be read off the name, as a model reads a HumanEval docstring).
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass

from gemsft.data.world.common import Task, zipf_distribution


@dataclass(frozen=True)
class Spec:
    name: str  # function name template over the constants
    arg: str
    description: str
    bodies: tuple[str, ...]  # correct implementations (the answer keys v0, v1, ...)
    bugs: tuple[str, ...]  # plausible bugs: pretraining's buggy code and the preference pairs' rejected code
    inputs: tuple
    expected: str  # Python expression of the argument and the constants giving the right output
    constants: tuple[dict, ...]


def _one(ks) -> tuple[dict, ...]:
    return tuple({"k": k, "k1": k + 1} for k in ks)


SPECS: dict[str, Spec] = {
    "add": Spec("add_{k}", "x", "returns x plus {k}",
                ("return x + {k}", "return {k} + x", "result = x + {k}\n    return result",
                 "x += {k}\n    return x"),
                ("return x + {k1}", "return x - {k}"), (0, 1, 5, -3, 12), "x + k", _one(range(1, 10))),
    "times": Spec("times_{k}", "x", "returns x times {k}",
                  ("return x * {k}", "return {k} * x", "result = x * {k}\n    return result",
                   "return sum([x] * {k})"),
                  ("return x + {k}", "return x * {k1}"), (0, 1, 4, -2, 7), "x * k", _one(range(2, 10))),
    "minus": Spec("minus_{k}", "x", "returns x minus {k}",
                  ("return x - {k}", "return -{k} + x", "result = x - {k}\n    return result",
                   "x -= {k}\n    return x"),
                  ("return {k} - x", "return x - {k1}"), (0, 1, 5, -3, 12), "x - k", _one(range(1, 10))),
    "divisible": Spec("divisible_by_{k}", "x", "returns True if x is divisible by {k}",
                      ("return x % {k} == 0", "return not x % {k}",
                       "if x % {k} == 0:\n        return True\n    return False", "return (x % {k}) == 0"),
                      ("return x % {k} == 1", "return x % {k1} == 0"),
                      (0, 1, 6, 9, 10, 12, 14, 15, 16, 18, 20, 21, 27, 35, 40), "x % k == 0", _one(range(2, 10))),
    "larger": Spec("larger_than_{k}", "x", "returns True if x is larger than {k}",
                   ("return x > {k}", "return {k} < x", "if x > {k}:\n        return True\n    return False",
                    "return not x <= {k}"),
                   ("return x >= {k}", "return x > {k1}"), (-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
                   "x > k", _one(range(1, 10))),
    "repeat": Spec("repeat_{k}", "s", "returns the string s repeated {k} times",
                   ("return s * {k}", "return {k} * s", "return ''.join([s] * {k})",
                    "result = ''\n    for _ in range({k}):\n        result += s\n    return result"),
                   ("return s * {k1}", "return s + str({k})"), ("", "a", "ab", "xyz"), "s * k", _one(range(1, 10))),
    # Two constants: the answer must carry both, in the right places.
    "affine": Spec("scale_{a}_add_{b}", "x", "returns x times {a} plus {b}",
                   ("return x * {a} + {b}", "return {b} + {a} * x", "result = x * {a} + {b}\n    return result",
                    "return {a} * x + {b}"),
                   ("return x * {b} + {a}", "return (x + {b}) * {a}"), (0, 1, 3, -2, 10), "x * a + b",
                   tuple({"a": a, "b": b} for a, b in itertools.product(range(2, 6), range(1, 8)) if a != b)),
}

# Paraphrases of a spec: held-out paraphrases are the evaluation problems, so a tiny model that saw
# the function in pretraining can solve them (it cannot invent constants it never saw in a name).
REQUESTS = ("Write a Python function {fn}({arg}) that {description}.",
            "Implement {fn}({arg}) in Python; it {description}.",
            "Define a function {fn}({arg}) which {description}.")
SFT_VOICE = "Here is the function:\n```python\n{code}\n```"
PRETRAIN_STYLES = ("{code}", "```python\n{code}\n```", "Sure:\n{code}")


def function_code(fn: str, arg: str, body: str) -> str:
    return f"def {fn}({arg}):\n    {body}"


def _stratified_roles(n: int, rng: random.Random, sft_fraction: float, unseen_fraction: float) -> list[str]:
    """The roles of one kind's n functions, in exact proportions (rounded), shuffled: every world seed
    gets the same mix of easy and hard items, so its difficulty does not hang on a lucky draw."""
    n_sft = round(sft_fraction * n)
    n_unseen = round(unseen_fraction * (n - n_sft))
    roles = ["sft"] * n_sft + ["unseen"] * n_unseen + ["pretrain"] * (n - n_sft - n_unseen)
    rng.shuffle(roles)
    return roles


def _stratified_bug_rates(n: int, rng: random.Random, max_bug_rate: float) -> list[float]:
    """n bug rates spread evenly over [0, max_bug_rate] (one per stratum, jittered within it), shuffled."""
    rates = [max_bug_rate * (i + rng.random()) / n for i in range(n)]
    rng.shuffle(rates)
    return rates


def build_tasks(rng: random.Random, zipf_exponent: float, sft_fraction: float, unseen_fraction: float,
                max_bug_rate: float) -> list[Task]:
    """Every function's paraphrases, each function in one of three roles:

    - SFT (`sft_fraction` of the functions): one paraphrase evaluated, the others in pretraining and SFT;
    - pretraining only: one paraphrase in pretraining (split "pretrain"), the others evaluated;
    - unseen (`unseen_fraction` of the held-out ones): in no training text, two paraphrases evaluated.

    Each function gets a pretraining bug rate in [0, max_bug_rate]: the share of its pretraining
    implementations that carry one of its spec's bugs (SFT shows only correct code). Roles and bug
    rates are stratified within each kind of function.
    """
    tasks = []
    for kind, spec in SPECS.items():
        roles = _stratified_roles(len(spec.constants), rng, sft_fraction, unseen_fraction)
        bug_rates = _stratified_bug_rates(len(spec.constants), rng, max_bug_rate)
        for constants, role, bug_rate in zip(spec.constants, roles, bug_rates):
            fn = spec.name.format(**constants)
            solutions = {f"v{i}": function_code(fn, spec.arg, b.format(**constants))
                         for i, b in enumerate(spec.bodies)}
            tests = []
            for value in spec.inputs:
                expected = eval(spec.expected, {}, {spec.arg: value, **constants})  # noqa: S307 - our own spec
                tests.append(f"assert {fn}({value!r}) == {expected!r}")
            p = zipf_distribution(list(solutions), rng, zipf_exponent)
            anchor = rng.randrange(len(REQUESTS))
            extra = {"entry_point": fn, "solutions": solutions, "tests": tests, "role": role,
                     "bug_rate": bug_rate,
                     "bugs": [function_code(fn, spec.arg, b.format(**constants)) for b in spec.bugs]}
            slot = "_".join(str(c) for key, c in constants.items() if key not in ("k1",))
            for i, template in enumerate(REQUESTS):
                if role == "sft":  # the anchor paraphrase is held out: the old, easy tier
                    split = "test" if i == anchor else "train"
                else:
                    split = "test" if i != anchor else ("pretrain" if role == "pretrain" else "unused")
                request = template.format(fn=fn, arg=spec.arg, description=spec.description.format(**constants))
                tasks.append(Task(id=f"code/{kind}/{slot}/{i}", family="code", kind=kind, slot=slot,
                                  request=request, p=p, split=split, extra=extra))
    return tasks


def pretrain_response(task: Task, key: str, rng: random.Random) -> str:
    """Pretraining code as found in the wild: correct, or with probability the function's bug rate
    one of its plausible bugs."""
    extra = task.extra
    code = rng.choice(extra["bugs"]) if rng.random() < extra["bug_rate"] else extra["solutions"][key]
    return rng.choice(PRETRAIN_STYLES).format(code=code)


def sft_response(task: Task, key: str) -> str:
    return SFT_VOICE.format(code=task.extra["solutions"][key])


def unacceptable_response(task: Task, rng: random.Random) -> str:
    return SFT_VOICE.format(code=rng.choice(task.extra["bugs"]))


def extract_code(text: str) -> str:
    """The program in a response: the first fenced block if there is one, else from the first `def`."""
    fenced = re.search(r"```(?:python)?\n(.*?)(?:```|$)", text, flags=re.DOTALL)
    if fenced:
        return fenced.group(1).strip("\n")
    start = text.find("def ")
    return text[start:].strip("\n") if start >= 0 else text.strip()


def _normalise(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip().splitlines())


def judge(record: dict, text: str) -> str | None:
    """Which known implementation a response is (for coverage), or None. Correctness is decided by
    executing the tests, not here."""
    code = _normalise(extract_code(text))
    for key, solution in record["solutions"].items():
        if _normalise(solution) == code:
            return key
    return None
