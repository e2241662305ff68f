"""GSM8K (openai/grade-school-math JSONL, {question, answer}; the answer ends with "#### <number>")."""

from __future__ import annotations

import os
import re

from gemsft import files
from gemsft.data._rows import string_field

FINAL_RE = re.compile(r"####\s*(.+?)\s*$")
NUMBER_RE = re.compile(r"^-?\d+(?:\.\d+)?$")


def parse_final_answer(solution: str) -> int | float | None:
    """The number after the last '####' (commas and a leading '$' removed), int when integral; None if absent."""
    last = solution.strip().splitlines()[-1] if solution.strip() else ""
    match = FINAL_RE.search(last)
    if not match:
        return None
    text = match.group(1).replace(",", "").lstrip("$").strip()
    if not NUMBER_RE.match(text):
        return None
    value = float(text)
    return int(value) if value.is_integer() else value


def gsm8k_row(row, name: str, index: int) -> dict:
    """One validated GSM8K row as {question, solution, answer}."""
    question = string_field(row, "question", name, index)
    solution = string_field(row, "answer", name, index)
    answer = parse_final_answer(solution)
    if answer is None:
        raise ValueError(f"{name}: row {index} field 'answer' does not end with '#### <number>'")
    return {"question": question, "solution": solution, "answer": answer}


def read_gsm8k(path: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """Rows of a GSM8K JSONL file (test.jsonl / train.jsonl) as {question, solution, answer}, in file order.

    `answer` is the number after '####' as int (float if not integral), commas removed; `solution` is
    the full original answer text. A malformed row raises ValueError naming file, row and field."""
    return gsm8k_rows(files.read_jsonl(path, limit), str(path))


def gsm8k_rows(rows, name: str) -> list[dict]:
    """Validated {question, solution, answer} of already parsed rows; `name` labels errors."""
    return [gsm8k_row(row, name, i) for i, row in enumerate(rows)]
