"""GSM8K (openai/grade-school-math JSONL, {question, answer}; the answer ends with "#### <number>")."""

from __future__ import annotations

import os
import re

from gemsft import files
from gemsft.data._rows import string_field
from gemsft.math_answer import PAPER_CODE, extract_math_answer

FINAL_RE = re.compile(r"####\s*(.+?)\s*$")
# What a well-formed gold answer is: one number, thousands separators where they belong.
BARE_NUMBER_RE = re.compile(r"\$?-?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")


def parse_final_answer(solution: str, compat: str | None = None) -> int | float | None:
    """The number after the '####' of the last line, int when integral; None if the line has no '####'
    or what follows is not one number. It goes through `extract_math_answer`, the extraction every math
    scorer uses, so gold and model answers are read alike ('1,450,000' is 1450000).

    compat="paper_code": the official scripts' label, `extract_math_answer` (paper_code) of the
    solution with '####' replaced by 'The answer is:' (row 611's '1,450,000' is 1450 there)."""
    if compat == PAPER_CODE:
        return extract_math_answer(solution.replace("####", "The answer is:"), compat)
    last = solution.strip().splitlines()[-1] if solution.strip() else ""
    match = FINAL_RE.search(last)
    if not match or not BARE_NUMBER_RE.fullmatch(match.group(1)):
        return None
    return extract_math_answer(f"The answer is: {match.group(1)}")


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
