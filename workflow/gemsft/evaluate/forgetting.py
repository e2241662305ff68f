"""Forgetting (Section 6.2): multiple-choice benchmarks run with lm-evaluation-harness, scored per
document so the report can pair the base model's and a fine-tuned model's answers (the alignment tax
is computed once, in `gemsft.report.alignment_tax`).

The default tier probes the embedded world's pretraining-only facts (`gemsft_world_knowledge`, a local
task: `write_world_knowledge_task`). The paper tier runs the six Open LLM Leaderboard v1 tasks through
the same `evaluate_tasks`; their configs go under `lm_eval_tasks/` (see its README) or come from
lm-eval's built-in tasks.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from gemsft import files
from gemsft.model_loading import lm_eval_model_args

TASKS_DIR = Path(__file__).parents[1] / "lm_eval_tasks"
WORLD_KNOWLEDGE_TASK = "gemsft_world_knowledge"
WORLD_KNOWLEDGE_TEMPLATE = TASKS_DIR / "world_knowledge" / "_template.yaml"

# Parts of lm-eval's result object that are kept on disk (samples are written separately, on request).
_RESULT_PARTS = ("results", "groups", "configs", "versions", "n-shot", "n-samples", "higher_is_better")


# --------------------------------------------------------------------------- the world knowledge task


def _check_knowledge_rows(rows: list[dict], source: Path) -> None:
    if not rows:
        raise ValueError(f"{source}: no knowledge probes")
    for index, row in enumerate(rows):
        question, choices, gold = row.get("question"), row.get("choices"), row.get("gold")
        if not isinstance(question, str) or not question:
            raise ValueError(f"{source}: row {index} has no string field 'question'")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise ValueError(f"{source}: row {index} needs 'choices', a list of at least 2 non-empty strings")
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise ValueError(f"{source}: row {index} has 'gold'={gold!r}, not an index into its {len(choices)} choices")


def write_world_knowledge_task(eval_knowledge_path: str | os.PathLike, task_dir: str | os.PathLike) -> str:
    """Write the runnable `gemsft_world_knowledge` task YAML for this data file into `task_dir`.

    The YAML names the data file by absolute path (lm-eval's `json` loader with
    `data_files: {test: ...}`) and `include:`s the package's base config (prompt "Q: {question}\\nA:",
    continuations " {choice}.", target `gold`, metrics acc and acc_norm, zero-shot). Pass `task_dir` as
    `include_path` to `evaluate_tasks`. Returns the task name.
    """
    data = Path(eval_knowledge_path).resolve()
    if not data.is_file():
        raise FileNotFoundError(f"{data}: knowledge probe file not found")
    _check_knowledge_rows(files.read_jsonl(data), data)
    config = {
        "task": WORLD_KNOWLEDGE_TASK,
        "include": str(WORLD_KNOWLEDGE_TEMPLATE),
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
    }
    header = (f"# Written by gemsft.evaluate.forgetting.write_world_knowledge_task; the prompt, choices and metrics\n"
              f"# come from the included base config.\n")
    out = Path(task_dir) / f"{WORLD_KNOWLEDGE_TASK}.yaml"
    # The temporary name does not end in .yaml, so a concurrent task index never sees a partial file.
    with files.atomic_path(out) as tmp:
        tmp.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return WORLD_KNOWLEDGE_TASK


# --------------------------------------------------------------------------- running lm-eval


def _as_paths(include_path) -> list[str]:
    if include_path is None:
        return []
    if isinstance(include_path, (str, os.PathLike)):
        include_path = [include_path]
    return [str(Path(p).resolve()) for p in include_path]


def _task_manager(paths: list[str], task_names: list[str], include_defaults: bool | None):
    from lm_eval.tasks import TaskManager

    # Indexing lm-eval's ~15k built-in task configs takes about 15 s here: only do it when asked to, or
    # (include_defaults=None) when a requested task is not among the local ones.
    manager = TaskManager(include_path=paths or None, include_defaults=bool(include_defaults))
    missing = [t for t in task_names if t not in manager.all_tasks]
    if missing and include_defaults is None:
        manager = TaskManager(include_path=paths or None, include_defaults=True)
        missing = [t for t in task_names if t not in manager.all_tasks]
    if missing:
        where = f"under {', '.join(paths)}" if paths else "without an include_path"
        builtins = "" if include_defaults is False else " or among lm-eval's built-in tasks"
        raise ValueError(f"unknown lm-eval task(s) {', '.join(missing)}: not found {where}{builtins}")
    return manager


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def tidy_results(results: Mapping) -> dict:
    """{task: {metric: value}} from lm-eval's `results` (the filter suffix ",none" dropped; other filters,
    e.g. GSM8K's "exact_match,strict-match", kept), plus `n`, the number of documents scored."""
    n_samples = results.get("n-samples") or {}
    tidy = {}
    for task, metrics in (results.get("results") or {}).items():
        row = {}
        for key, value in metrics.items():
            name, comma, filter_name = key.partition(",")
            if not comma:  # "alias", "name", "sample_len": bookkeeping, not metrics
                continue
            row[name if filter_name == "none" else key] = _number(value)
        if task in n_samples:
            row["n"] = int(n_samples[task].get("effective", n_samples[task].get("original")))
        tidy[task] = row
    return tidy


def evaluate_tasks(model_dir: str | os.PathLike, task_names: Sequence[str] | str, include_path,
                   out_json: str | os.PathLike, batch_size: int = 16, limit: int | float | None = None,
                   num_fewshot: int | None = None, *, loading: Mapping | None = None,
                   include_defaults: bool | None = None, samples_jsonl: str | os.PathLike | None = None) -> dict:
    """Run lm-eval's `hf` model on `task_names` and write its results JSON atomically to `out_json`.

    `model_dir`: a directory or hub id (gemsft.model_loading.resolve_model). The model runs on the
    stage's device in the `loading` settings' dtype (bf16 on a GPU by default, float32 on a CPU).
    `include_path`: a directory (or list) of local task YAMLs. `include_defaults`: also index lm-eval's
    built-in tasks (None: only if a requested task is not local). `num_fewshot` overrides every task's
    own setting (None keeps them). `samples_jsonl`: also write lm-eval's per-document records there.
    Returns `tidy_results`: {task: {"acc": .., "acc_stderr": .., "acc_norm": .., ..., "n": ..}}.
    """
    # The resolved directory, its dtype on this device, attn_implementation when set
    model_args, device = lm_eval_model_args(model_dir, loading)
    model_dir = model_args["pretrained"]
    task_names = [task_names] if isinstance(task_names, str) else list(task_names)
    if not task_names:
        raise ValueError("evaluate_tasks needs at least one task name")
    paths = _as_paths(include_path)
    manager = _task_manager(paths, task_names, include_defaults)

    import lm_eval

    # BOS: our pretraining documents start with BOS (gemsft.pretrain.tokenizer.encode_document), but the
    # tokenizer has no post-processor, so `tokenizer(text)` adds no BOS, and lm-eval's hf model only
    # adds special tokens when the tokenizer does (add_bos_token unset). add_bos_token=True makes lm-eval
    # load the tokenizer with add_bos_token=True (transformers then installs a BOS template) and encode
    # with add_special_tokens=True, so every context is scored as "<|bos|>Q: ...", as in pretraining.
    # Hub base models whose tokenizer already adds BOS (Llama-3.1) are unaffected. model_args is a dict,
    # not a "k=v,..." string, so a path with a comma cannot break it.
    model_args["add_bos_token"] = True
    start = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model="hf", model_args=model_args, tasks=task_names, task_manager=manager, batch_size=batch_size,
        device=device, limit=limit, num_fewshot=num_fewshot, log_samples=samples_jsonl is not None,
    )
    wall_s = time.perf_counter() - start
    if results is None:  # non-zero rank of a distributed run
        return {}

    record = {part: results[part] for part in _RESULT_PARTS if part in results}
    record["gemsft"] = {"model_dir": model_dir, "model_args": model_args, "tasks": task_names,
                        "include_path": paths, "batch_size": batch_size, "limit": limit,
                        "num_fewshot": num_fewshot, "device": device, "wall_s": wall_s,
                        "lm_eval_version": getattr(lm_eval, "__version__", None)}
    # Task configs hold functions (doc_to_choice, ...): default=str writes their repr.
    text = json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
    if samples_jsonl is not None:
        with files.atomic_path(samples_jsonl) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for task, rows in (results.get("samples") or {}).items():
                for row in rows:
                    f.write(json.dumps({"task": task, **row}, default=str) + "\n")
    with files.atomic_path(out_json) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return tidy_results(results)


# --------------------------------------------------------------------------- alignment tax


def primary_scores(tidy: Mapping[str, Mapping], metric: str | Mapping[str, str] = "acc") -> dict[str, float]:
    """{task: score} from `tidy_results`, with one metric for all tasks or a {task: metric} mapping
    (the Open LLM Leaderboard v1 uses acc_norm for ARC and HellaSwag, acc for MMLU and WinoGrande, mc2
    for TruthfulQA, exact_match for GSM8K)."""
    scores = {}
    for task, metrics in tidy.items():
        name = metric if isinstance(metric, str) else metric.get(task)
        if name is None:
            continue
        if metrics.get(name) is None:
            raise KeyError(f"task {task!r} has no metric {name!r} (has {', '.join(sorted(metrics))})")
        scores[task] = float(metrics[name])
    return scores


# --------------------------------------------------------------------------- per-document scores


def document_rows(samples_jsonl: str | os.PathLike | Sequence[Mapping], task: str, label: str,
                  metrics: Sequence[str] = ("acc", "acc_norm"), filter_name: str | None = None,
                  prompt_prefix: str = "") -> list[dict]:
    """Per-document rows (in percent) of one task from lm-eval's samples file (or its parsed records),
    for bootstrap intervals over documents and paired alignment-tax intervals (the base and a tuned
    model score the same doc_ids). Their mean is lm-eval's aggregate score. `filter_name` keeps one
    filter's records (GSM8K logs each document once per filter); `prompt_prefix` goes before each
    doc_id (several tasks pooled under one label)."""
    from gemsft.evaluate.stage import metric

    is_path = isinstance(samples_jsonl, (str, os.PathLike))
    records, source = (files.read_jsonl(samples_jsonl), samples_jsonl) if is_path else (samples_jsonl, "samples")
    rows = []
    chosen = (r for r in records if r["task"] == task and (filter_name is None or r.get("filter") == filter_name))
    for record in sorted(chosen, key=lambda r: r["doc_id"]):
        for name in metrics:
            if name not in record:
                raise KeyError(f"{source}: document {record['doc_id']} of {task!r} has no metric {name!r}")
            rows.append(metric(label, name, 100.0 * float(record[name]),
                               prompt_id=f"{prompt_prefix}{record['doc_id']}"))
    if not rows:
        raise ValueError(f"{source}: no documents of task {task!r}")
    return rows
