"""Code family: tiny Python functions from a one-line spec, each with unit tests and several
correct implementations (the world's HumanEval)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from gemsft.data.world.common import Task, split_surface_forms, zipf_distribution


@dataclass(frozen=True)
class Spec:
    name: str  # function name template
    arg: str
    description: str
    bodies: tuple[str, ...]  # correct implementations (the answer keys v0, v1, ...)
    wrong_body: str  # a plausible bug, for preference pairs
    inputs: tuple
    expected: str  # Python expression of the argument and k giving the right output
    ks: tuple[int, ...]


SPECS: dict[str, Spec] = {
    "add": Spec("add_{k}", "x", "returns x plus {k}",
                ("return x + {k}", "return {k} + x", "result = x + {k}\n    return result",
                 "x += {k}\n    return x"),
                "return x + {k1}", (0, 1, 5, -3, 12), "x + k", tuple(range(1, 10))),
    "times": Spec("times_{k}", "x", "returns x times {k}",
                  ("return x * {k}", "return {k} * x", "result = x * {k}\n    return result",
                   "return sum([x] * {k})"),
                  "return x + {k}", (0, 1, 4, -2, 7), "x * k", tuple(range(2, 10))),
    "minus": Spec("minus_{k}", "x", "returns x minus {k}",
                  ("return x - {k}", "return -{k} + x", "result = x - {k}\n    return result",
                   "x -= {k}\n    return x"),
                  "return {k} - x", (0, 1, 5, -3, 12), "x - k", tuple(range(1, 10))),
    "divisible": Spec("divisible_by_{k}", "x", "returns True if x is divisible by {k}",
                      ("return x % {k} == 0", "return not x % {k}",
                       "if x % {k} == 0:\n        return True\n    return False", "return (x % {k}) == 0"),
                      "return x % {k} == 1", (0, 1, 6, 9, 10, 12, 14, 15, 16, 18, 20, 21, 27, 35, 40),
                      "x % k == 0", tuple(range(2, 10))),
    "larger": Spec("larger_than_{k}", "x", "returns True if x is larger than {k}",
                   ("return x > {k}", "return {k} < x", "if x > {k}:\n        return True\n    return False",
                    "return not x <= {k}"),
                   "return x >= {k}", (-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), "x > k", tuple(range(1, 10))),
    "repeat": Spec("repeat_{k}", "s", "returns the string s repeated {k} times",
                   ("return s * {k}", "return {k} * s", "return ''.join([s] * {k})",
                    "result = ''\n    for _ in range({k}):\n        result += s\n    return result"),
                   "return s * {k1}", ("", "a", "ab", "xyz"), "s * k", tuple(range(1, 10))),
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


def build_tasks(rng: random.Random, test_fraction: float, zipf_exponent: float) -> list[Task]:
    tasks, groups = [], {}
    for kind, spec in SPECS.items():
        for k in spec.ks:
            fn = spec.name.format(k=k)
            solutions = {f"v{i}": function_code(fn, spec.arg, b.format(k=k)) for i, b in enumerate(spec.bodies)}
            tests = []
            for value in spec.inputs:
                expected = eval(spec.expected, {}, {spec.arg: value, "k": k})  # noqa: S307 - our own spec
                tests.append(f"assert {fn}({value!r}) == {expected!r}")
            p = zipf_distribution(list(solutions), rng, zipf_exponent)
            extra = {"entry_point": fn, "solutions": solutions, "tests": tests,
                     "wrong": function_code(fn, spec.arg, spec.wrong_body.format(k=k, k1=k + 1))}
            group = [Task(id=f"code/{kind}/{k}/{i}", family="code", kind=kind, slot=str(k),
                          request=template.format(fn=fn, arg=spec.arg, description=spec.description.format(k=k)),
                          p=p, extra=extra)
                     for i, template in enumerate(REQUESTS)]
            groups[(kind, k)] = group
            tasks.extend(group)
    split_surface_forms(groups, rng, test_fraction)
    return tasks


def pretrain_response(task: Task, key: str, rng: random.Random) -> str:
    return rng.choice(PRETRAIN_STYLES).format(code=task.extra["solutions"][key])


def sft_response(task: Task, key: str) -> str:
    return SFT_VOICE.format(code=task.extra["solutions"][key])


def unacceptable_response(task: Task, rng: random.Random) -> str:
    return SFT_VOICE.format(code=task.extra["wrong"])


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
