"""The data mirror's files of the six leaderboard tasks (../shared/data beside the checkout, see its SOURCES.md) read
into the rows of the hub datasets that lm-eval's tasks load (`gemsft.data.leaderboard.HUB_DATASETS`),
so that the same doc_to_text / doc_to_choice serve both, and written once as JSONL for the task YAMLs.

A malformed file or row is a one-line error naming the file and the row (or document) and field.
"""

from __future__ import annotations

import bz2
import csv
import json
import os
from pathlib import Path

from gemsft import files
from gemsft.data.gsm8k import read_gsm8k

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


# --------------------------------------------------------------------------- readers (-> hub schema)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: data mirror file not found")
    return path


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
    for i, row in enumerate(files.read_jsonl(_existing(Path(path)))):
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
    for i, row in enumerate(files.read_jsonl(_existing(Path(path)))):
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


# --------------------------------------------------------------------------- converting into JSONL


def _json_source(split_files: dict[str, Path]) -> dict:
    return {"dataset_path": "json", "dataset_kwargs": {"data_files": {k: str(v) for k, v in split_files.items()}}}


def _write_docs(path: Path, docs: list[dict]) -> Path:
    files.write_jsonl(path, docs)
    return path


class MirrorConverter:
    """Converts the mirror's files into hub-schema JSONL under `data_dir` (the scored split cut to
    `limit` documents) and returns each task's data source, naming the files under `named_dir`
    (default `data_dir`): where they will be once a directory written under a temporary name is
    renamed."""

    def __init__(self, root: Path, data_dir: Path, limit: int | None, named_dir: Path | None = None):
        self.root, self.data_dir, self.limit = root, data_dir, limit
        self.named_dir = data_dir if named_dir is None else named_dir

    def source(self, split_files: dict[str, Path]) -> dict:
        return _json_source({split: self.named_dir / Path(path).relative_to(self.data_dir)
                             for split, path in split_files.items()})

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
        return self.source(out)

    def hellaswag(self) -> dict:
        scored, pool = hellaswag_partition(read_hellaswag(self.file(MIRROR_FILES["hellaswag"])))
        folder = self.data_dir / "hellaswag"
        return self.source({"validation": _write_docs(folder / "validation.jsonl", self.scored(scored)),
                             "fewshot": _write_docs(folder / "fewshot.jsonl", pool)})

    def mmlu(self, subject: str) -> dict:
        pattern, folder = MIRROR_FILES["mmlu"], self.data_dir / "mmlu" / subject
        test = read_mmlu(self.file(pattern.format(split="test", subject=subject)), subject)
        dev = read_mmlu(self.file(pattern.format(split="dev", subject=subject)), subject)
        return self.source({"test": _write_docs(folder / "test.jsonl", self.scored(test)),
                             "dev": _write_docs(folder / "dev.jsonl", dev)})

    def truthfulqa(self) -> dict:
        docs = read_truthfulqa_mc(self.file(MIRROR_FILES["truthfulqa"]))
        return self.source({"validation": _write_docs(self.data_dir / "truthfulqa_mc" / "validation.jsonl",
                                                       self.scored(docs))})

    def winogrande(self) -> dict:
        mirror_files, folder = MIRROR_FILES["winogrande"], self.data_dir / "winogrande"
        return self.source({
            "train_xs": _write_docs(folder / "train_xs.jsonl", read_winogrande(self.file(mirror_files["train_xs"]))),
            "validation": _write_docs(folder / "validation.jsonl",
                                      self.scored(read_winogrande(self.file(mirror_files["validation"])))),
        })

    def gsm8k(self) -> dict:
        mirror_files, folder = MIRROR_FILES["gsm8k"], self.data_dir / "gsm8k"
        return self.source({"train": _write_docs(folder / "train.jsonl", read_gsm8k_hub(self.file(mirror_files["train"]))),
                             "test": _write_docs(folder / "test.jsonl",
                                                 self.scored(read_gsm8k_hub(self.file(mirror_files["test"]))))})
