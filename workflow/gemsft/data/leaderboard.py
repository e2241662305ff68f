"""The six Open LLM Leaderboard v1 tasks of the paper-tier forgetting evaluation (Section 6.2):
ARC-Challenge 25-shot acc_norm, HellaSwag 10-shot acc_norm, MMLU 5-shot acc (unweighted mean over the 57
subjects), TruthfulQA MC2 0-shot, WinoGrande 5-shot acc, GSM8K 5-shot exact_match (strict "#### number").

Prompts, choices, few-shot splits and metrics mirror lm-eval 0.4.13's built-in tasks (the base configs and
helpers are in `lm_eval_tasks/leaderboard/`). `write_leaderboard_tasks` writes the runnable task YAMLs
into a run directory; they read either the hub datasets at pinned revisions, or the local data mirror
(/work/shared/data, see its SOURCES.md), whose files are converted once into JSONL in the hub's schema
so that the same doc_to_text / doc_to_choice serve both. Run them with
`gemsft.evaluate.forgetting.evaluate_tasks(model_dir, tasks, out_dir, ...)` and pick the leaderboard's metric per
task with `primary_scores(tidy, primary_metrics())`.

Deviations of the mirror variant (the hub variant has none): HellaSwag's mirror holds only the
validation split, so its few-shot examples come from a fixed held-out twentieth of validation
(`HELLASWAG_FEWSHOT_EVERY`), which is not scored (9,540 of 10,042 documents are); WinoGrande's few-shot
pool is train_xs (160 rows) instead of winogrande_xl's train (40,398), the only train file the mirror has.
"""

from __future__ import annotations

import bz2
import csv
import json
import os
from pathlib import Path

import yaml

from gemsft import files
from gemsft.data.gsm8k import read_gsm8k
from gemsft.data.sources import GSM8K_HUB_COMMIT

TASKS_DIR = Path(__file__).parents[1] / "lm_eval_tasks" / "leaderboard"

ARC = "gemsft_arc_challenge"
HELLASWAG = "gemsft_hellaswag"
MMLU = "gemsft_mmlu"  # a group of the 57 `gemsft_mmlu_<subject>` tasks
TRUTHFULQA = "gemsft_truthfulqa_mc2"
WINOGRANDE = "gemsft_winogrande"
GSM8K = "gemsft_gsm8k"

# task -> (num_fewshot, the leaderboard's metric as `gemsft.evaluate.forgetting.tidy_results` names it)
LEADERBOARD_TASKS: dict[str, tuple[int, str]] = {
    ARC: (25, "acc_norm"),
    HELLASWAG: (10, "acc_norm"),
    MMLU: (5, "acc"),
    TRUTHFULQA: (0, "mc2"),
    WINOGRANDE: (5, "acc"),
    GSM8K: (5, "exact_match,strict-match"),
}

BASE_CONFIGS = {
    ARC: TASKS_DIR / "_arc_challenge.yaml",
    HELLASWAG: TASKS_DIR / "_hellaswag.yaml",
    MMLU: TASKS_DIR / "_mmlu.yaml",
    TRUTHFULQA: TASKS_DIR / "_truthfulqa_mc2.yaml",
    WINOGRANDE: TASKS_DIR / "_winogrande.yaml",
    GSM8K: TASKS_DIR / "_gsm8k.yaml",
}

# Hub datasets as lm-eval 0.4.13's tasks name them (dataset_path, dataset_name), at pinned revisions
# (commit ids of the hub dataset repositories; MMLU's dataset_name is the subject).
HUB_DATASETS: dict[str, tuple[str, str | None, str]] = {
    ARC: ("allenai/ai2_arc", "ARC-Challenge", "210d026faf9955653af8916fad021475a3f00453"),
    HELLASWAG: ("Rowan/hellaswag", None, "218ec52e09a7e7462a5400043bb9a69a41d06b76"),
    MMLU: ("cais/mmlu", None, "c30699e8356da336a370243923dbaf21066bb9fe"),
    TRUTHFULQA: ("truthfulqa/truthful_qa", "multiple_choice", "741b8276f2d1982aa3d5b832d3ee81ed3b896490"),
    WINOGRANDE: ("allenai/winogrande", "winogrande_xl", "01e74176c63542e6b0bcb004dcdea22d94fb67b5"),
    GSM8K: ("openai/gsm8k", "main", GSM8K_HUB_COMMIT),
}

MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine",
    "college_physics", "computer_security", "conceptual_physics", "econometrics", "electrical_engineering",
    "elementary_mathematics", "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics", "high_school_mathematics",
    "high_school_microeconomics", "high_school_physics", "high_school_psychology", "high_school_statistics",
    "high_school_us_history", "high_school_world_history", "human_aging", "human_sexuality",
    "international_law", "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy",
    "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy",
    "virology", "world_religions",
)
assert len(MMLU_SUBJECTS) == 57

# HellaSwag (mirror only): validation documents whose index i has i % 20 == 19 (502 of 10,042) form the
# few-shot pool and are not scored; the other 9,540 are, in file order.
HELLASWAG_FEWSHOT_EVERY = 20

# Mirror files (relative to the mirror root, SOURCES.md).
MIRROR_FILES = {
    "arc": {"train": "arc_challenge/ARC-Challenge-Train.jsonl", "validation": "arc_challenge/ARC-Challenge-Dev.jsonl",
            "test": "arc_challenge/ARC-Challenge-Test.jsonl"},
    "hellaswag": "hellaswag/hellaswag_val_full.txt.bz2",
    "mmlu": "mmlu/{split}/{subject}_{split}.csv",
    "truthfulqa": "truthfulqa/v0/mc_task.json",
    "winogrande": {"train_xs": "winogrande/train_xs.jsonl", "validation": "winogrande/dev.jsonl"},
    "gsm8k": {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
}


def primary_metrics() -> dict[str, str]:
    """{task: metric} of the leaderboard, for `gemsft.evaluate.forgetting.primary_scores`."""
    return {task: metric for task, (_, metric) in LEADERBOARD_TASKS.items()}


def mmlu_task(subject: str) -> str:
    return f"{MMLU}_{subject}"


def mmlu_description(subject: str) -> str:
    """lm-eval's MMLU task description (tasks/mmlu/_generate_configs.py)."""
    return f"The following are multiple choice questions (with answers) about {' '.join(subject.split('_'))}.\n\n"


# --------------------------------------------------------------------------- mirror readers (-> hub schema)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: data mirror file not found")
    return path


def _jsonl_rows(path: Path, name: str) -> list:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{name}: row {len(rows)} is not valid JSON ({err.msg})") from None
    return rows


def _string(row, field: str, name: str, index: int) -> str:
    value = row.get(field) if isinstance(row, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: row {index} has no non-empty string field {field!r}")
    return value


def read_arc(path: str | os.PathLike) -> list[dict]:
    """ARC original jsonl ({id, question: {stem, choices: [{text, label}]}, answerKey}) as the hub's
    allenai/ai2_arc rows {id, question, choices: {text, label}, answerKey}, in file order."""
    name = str(path)
    docs = []
    for i, row in enumerate(_jsonl_rows(_existing(Path(path)), name)):
        question = row.get("question") if isinstance(row, dict) else None
        if not isinstance(question, dict):
            raise ValueError(f"{name}: row {i} has no object field 'question'")
        stem = _string(question, "stem", name, i)
        choices = question.get("choices")
        if not isinstance(choices, list) or len(choices) < 2:
            raise ValueError(f"{name}: row {i} needs 'question.choices', a list of at least 2 choices")
        texts = [_string(c, "text", name, i) for c in choices]
        labels = [_string(c, "label", name, i) for c in choices]
        key = _string(row, "answerKey", name, i)
        if key not in labels:
            raise ValueError(f"{name}: row {i} has answerKey {key!r}, not one of its labels {labels}")
        docs.append({"id": _string(row, "id", name, i), "question": stem,
                     "choices": {"text": texts, "label": labels}, "answerKey": key})
    return docs


def _split_context(ctx: str) -> tuple[str, str]:
    """(ctx_a, ctx_b) of a HellaSwag context whose two parts the mirror joined with a space.

    ctx_b, the start of the sentence the endings complete, is lower case in HellaSwag (lm-eval
    capitalises it); it is recovered as the text after the last sentence end when that text starts with a
    lower-case letter, else ctx_b is empty (WikiHow contexts, which end with a full sentence)."""
    end = max(ctx.rfind(". "), ctx.rfind("! "), ctx.rfind("? "))
    if end >= 0 and ctx[end + 2:end + 3].islower():
        return ctx[:end + 1], ctx[end + 2:]
    return ctx, ""


def read_hellaswag(path: str | os.PathLike) -> list[dict]:
    """The mirror's HellaSwag validation text (6 lines per document: "activity_label: ctx", label,
    4 endings) as hub Rowan/hellaswag rows {activity_label, ctx_a, ctx_b, ctx, endings, label (str)}.

    The mirror already removed the WikiHow "[header]"/"[step]"/"[title]" markers (its own preprocessing,
    close to lm-eval's) and joined ctx_a and ctx_b; lm-eval's process_docs runs on these rows as on the
    hub's. ind, source_id, split and split_type are not in the mirror."""
    path = _existing(Path(path))
    with bz2.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise ValueError(f"{path}: {len(lines)} lines, not 6 per document")
    docs = []
    for i in range(len(lines) // 6):
        head, gold, *endings = lines[6 * i:6 * i + 6]
        activity_label, sep, ctx = head.partition(": ")
        if not sep or not activity_label or not ctx:
            raise ValueError(f"{path}: document {i} (line {6 * i + 1}) is not 'activity_label: context'")
        if gold not in ("0", "1", "2", "3"):
            raise ValueError(f"{path}: document {i} (line {6 * i + 2}) has label {gold!r}, not 0-3")
        ctx_a, ctx_b = _split_context(ctx)
        docs.append({"activity_label": activity_label, "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": ctx,
                     "endings": endings, "label": gold})
    return docs


def hellaswag_partition(docs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(scored, few-shot pool) of the mirror's validation documents, both in file order."""
    every = HELLASWAG_FEWSHOT_EVERY
    scored = [doc for i, doc in enumerate(docs) if i % every != every - 1]
    pool = [doc for i, doc in enumerate(docs) if i % every == every - 1]
    return scored, pool


def read_mmlu(path: str | os.PathLike, subject: str) -> list[dict]:
    """A header-less MMLU CSV (question, A, B, C, D, answer letter) as hub cais/mmlu rows
    {question, subject, choices, answer (0-3)}, in file order."""
    path = _existing(Path(path))
    docs = []
    with open(path, encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if len(row) != 6:
                raise ValueError(f"{path}: row {i} has {len(row)} fields, not 6 (question, A-D, answer)")
            if row[5] not in ("A", "B", "C", "D"):
                raise ValueError(f"{path}: row {i} has answer {row[5]!r}, not A-D")
            docs.append({"question": row[0], "subject": subject, "choices": row[1:5], "answer": "ABCD".index(row[5])})
    if not docs:
        raise ValueError(f"{path}: no rows")
    return docs


def _targets(item: dict, field: str, name: str, index: int) -> dict:
    targets = item.get(field)
    if (not isinstance(targets, dict) or not targets
            or not all(isinstance(k, str) and v in (0, 1) and not isinstance(v, bool) for k, v in targets.items())):
        raise ValueError(f"{name}: item {index} needs {field!r}, a non-empty {{answer: 0/1}} object")
    if 1 not in targets.values():
        raise ValueError(f"{name}: item {index} field {field!r} has no true answer")
    return {"choices": list(targets), "labels": list(targets.values())}


def read_truthfulqa_mc(path: str | os.PathLike) -> list[dict]:
    """TruthfulQA mc_task.json ({question, mc1_targets, mc2_targets: {answer: 0/1}}) as hub
    truthfulqa/truthful_qa multiple_choice rows {question, mc1_targets, mc2_targets: {choices, labels}},
    choices in the JSON's key order (as the hub's conversion script did)."""
    path = _existing(Path(path))
    with open(path, encoding="utf-8") as f:
        items = json.load(f)
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: not a non-empty JSON list")
    name = str(path)
    return [{"question": _string(item, "question", name, i),
             "mc1_targets": _targets(item, "mc1_targets", name, i),
             "mc2_targets": _targets(item, "mc2_targets", name, i)} for i, item in enumerate(items)]


def read_winogrande(path: str | os.PathLike) -> list[dict]:
    """WinoGrande jsonl ({qID, sentence, option1, option2, answer "1"/"2"}) as hub allenai/winogrande
    rows {sentence, option1, option2, answer}, in file order."""
    name = str(path)
    docs = []
    for i, row in enumerate(_jsonl_rows(_existing(Path(path)), name)):
        sentence = _string(row, "sentence", name, i)
        if sentence.count("_") != 1:
            raise ValueError(f"{name}: row {i} field 'sentence' needs exactly one blank '_'")
        answer = _string(row, "answer", name, i)
        if answer not in ("1", "2"):
            raise ValueError(f"{name}: row {i} has answer {answer!r}, not '1' or '2'")
        docs.append({"sentence": sentence, "option1": _string(row, "option1", name, i),
                     "option2": _string(row, "option2", name, i), "answer": answer})
    return docs


def read_gsm8k_hub(path: str | os.PathLike) -> list[dict]:
    """GSM8K jsonl as hub openai/gsm8k rows {question, answer (the full solution, ending "#### n")}."""
    return [{"question": row["question"], "answer": row["solution"]} for row in read_gsm8k(_existing(Path(path)))]


# --------------------------------------------------------------------------- writing the task YAMLs


def _check_limit(limit) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    return limit


def _write_yaml(path: Path, config: dict, header: str) -> None:
    # The temporary name does not end in .yaml, so a concurrent task index never sees a partial file.
    with files.atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _hub_source(task: str, dataset_name: str | None = None) -> dict:
    path, name, revision = HUB_DATASETS[task]
    source = {"dataset_path": path}
    if dataset_name or name:
        source["dataset_name"] = dataset_name or name
    source["dataset_kwargs"] = {"revision": revision}
    return source


def _json_source(split_files: dict[str, Path]) -> dict:
    return {"dataset_path": "json", "dataset_kwargs": {"data_files": {k: str(v) for k, v in split_files.items()}}}


def _write_docs(path: Path, docs: list[dict]) -> Path:
    files.write_jsonl(path, docs)
    return path


class _Mirror:
    """Converts the mirror's files into hub-schema JSONL under `data_dir` (the scored split cut to
    `limit` documents) and returns each task's data source."""

    def __init__(self, root: Path, data_dir: Path, limit: int | None):
        self.root, self.data_dir, self.limit = root, data_dir, limit

    def file(self, relative: str) -> Path:
        return _existing(self.root / relative)

    def scored(self, docs: list[dict]) -> list[dict]:
        return docs if self.limit is None else docs[:self.limit]

    def arc(self) -> dict:
        out = {}
        for split, relative in MIRROR_FILES["arc"].items():
            docs = read_arc(self.file(relative))
            out[split] = _write_docs(self.data_dir / "arc_challenge" / f"{split}.jsonl",
                                     self.scored(docs) if split == "test" else docs)
        return _json_source(out)

    def hellaswag(self) -> dict:
        scored, pool = hellaswag_partition(read_hellaswag(self.file(MIRROR_FILES["hellaswag"])))
        folder = self.data_dir / "hellaswag"
        return _json_source({"validation": _write_docs(folder / "validation.jsonl", self.scored(scored)),
                             "fewshot": _write_docs(folder / "fewshot.jsonl", pool)})

    def mmlu(self, subject: str) -> dict:
        pattern, folder = MIRROR_FILES["mmlu"], self.data_dir / "mmlu" / subject
        test = read_mmlu(self.file(pattern.format(split="test", subject=subject)), subject)
        dev = read_mmlu(self.file(pattern.format(split="dev", subject=subject)), subject)
        return _json_source({"test": _write_docs(folder / "test.jsonl", self.scored(test)),
                             "dev": _write_docs(folder / "dev.jsonl", dev)})

    def truthfulqa(self) -> dict:
        docs = read_truthfulqa_mc(self.file(MIRROR_FILES["truthfulqa"]))
        return _json_source({"validation": _write_docs(self.data_dir / "truthfulqa_mc" / "validation.jsonl",
                                                       self.scored(docs))})

    def winogrande(self) -> dict:
        mirror_files, folder = MIRROR_FILES["winogrande"], self.data_dir / "winogrande"
        return _json_source({
            "train_xs": _write_docs(folder / "train_xs.jsonl", read_winogrande(self.file(mirror_files["train_xs"]))),
            "validation": _write_docs(folder / "validation.jsonl",
                                      self.scored(read_winogrande(self.file(mirror_files["validation"])))),
        })

    def gsm8k(self) -> dict:
        mirror_files, folder = MIRROR_FILES["gsm8k"], self.data_dir / "gsm8k"
        return _json_source({"train": _write_docs(folder / "train.jsonl", read_gsm8k_hub(self.file(mirror_files["train"]))),
                             "test": _write_docs(folder / "test.jsonl",
                                                 self.scored(read_gsm8k_hub(self.file(mirror_files["test"]))))})


# Splits per task: (hub, mirror). Keys are lm-eval TaskConfig fields.
_SPLITS = {
    ARC: ({"training_split": "train", "validation_split": "validation", "test_split": "test",
           "fewshot_split": "train"},) * 2,
    HELLASWAG: ({"training_split": "train", "validation_split": "validation", "fewshot_split": "train"},
                {"validation_split": "validation", "fewshot_split": "fewshot"}),
    MMLU: ({"test_split": "test", "fewshot_split": "dev"},) * 2,
    TRUTHFULQA: ({"validation_split": "validation"},) * 2,
    WINOGRANDE: ({"training_split": "train", "validation_split": "validation", "fewshot_split": "train"},
                 {"training_split": "train_xs", "validation_split": "validation", "fewshot_split": "train_xs"}),
    GSM8K: ({"training_split": "train", "test_split": "test", "fewshot_split": "train"},) * 2,
}


def write_leaderboard_tasks(out_dir: str | os.PathLike, mirror: str | os.PathLike | None,
                            limit: int | None = None) -> list[str]:
    """Write the runnable YAMLs of the six leaderboard tasks into `out_dir` and return their names
    (`LEADERBOARD_TASKS`' keys; `gemsft_mmlu` is a group of 57 subject tasks, written under
    `out_dir/mmlu/`). Pass `out_dir` as `include_path` to `gemsft.evaluate.forgetting.evaluate_tasks`.

    `mirror` None: the YAMLs name the hub datasets (`dataset_path`, `dataset_name`) at the revisions of
    `HUB_DATASETS` (`dataset_kwargs.revision`); running them needs the hub or its cache. `mirror` a
    directory (the local data mirror): its files are converted once into hub-schema JSONL under
    `out_dir/data/`, written atomically, and the YAMLs read them (`dataset_path: json` + `data_files`).
    `limit`: keep the first `limit` documents of each scored split (per MMLU subject), never of a
    few-shot pool; mirror only (for the hub, use `evaluate_tasks(..., limit=...)`, which does the same).
    """
    limit = _check_limit(limit)
    out_dir = Path(out_dir).resolve()
    if mirror is None:
        if limit is not None:
            raise ValueError("limit cuts the converted mirror files; with the hub datasets (mirror=None) "
                             "pass limit to gemsft.evaluate.forgetting.evaluate_tasks instead")
        sources = {task: _hub_source(task) for task in LEADERBOARD_TASKS if task != MMLU}
        subjects = {s: _hub_source(MMLU, s) for s in MMLU_SUBJECTS}
        variant = 0
        where = "the hub datasets at pinned revisions"
    else:
        root = Path(mirror).resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: data mirror directory not found")
        converter = _Mirror(root, out_dir / "data", limit)
        sources = {ARC: converter.arc(), HELLASWAG: converter.hellaswag(), TRUTHFULQA: converter.truthfulqa(),
                   WINOGRANDE: converter.winogrande(), GSM8K: converter.gsm8k()}
        subjects = {s: converter.mmlu(s) for s in MMLU_SUBJECTS}
        variant = 1
        where = f"the data mirror {root} (converted to hub-schema JSONL under data/" + \
                (f", scored splits cut to {limit} documents)" if limit is not None else ")")

    header = (f"# Written by gemsft.data.leaderboard.write_leaderboard_tasks from {where}.\n"
              f"# Prompt, choices, few-shot count and metrics come from the included base config.\n")
    for task, source in sources.items():
        config = {"task": task, "include": str(BASE_CONFIGS[task]), **source, **_SPLITS[task][variant]}
        _write_yaml(out_dir / f"{task}.yaml", config, header)
    for subject, source in subjects.items():
        config = {"task": mmlu_task(subject), "task_alias": subject, "include": str(BASE_CONFIGS[MMLU]),
                  "description": mmlu_description(subject), **source, **_SPLITS[MMLU][variant]}
        _write_yaml(out_dir / "mmlu" / f"{mmlu_task(subject)}.yaml", config, header)
    group = {"group": MMLU, "task": [mmlu_task(s) for s in MMLU_SUBJECTS],
             # The leaderboard's MMLU is the plain mean of the 57 subject accuracies.
             "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": False}],
             "metadata": {"version": 1.0}}
    _write_yaml(out_dir / f"{MMLU}.yaml", group, header)
    return list(LEADERBOARD_TASKS)


# --------------------------------------------------------------------------- per-document scores


