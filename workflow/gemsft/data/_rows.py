"""Row reading and validation shared by the real-data loaders: a malformed row is a one-line
ValueError naming the file, the row index (0-based) and the field, never a silent skip."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path


def read_jsonl_rows(path: str | os.PathLike, name: str | None = None, limit: int | None = None) -> list:
    """Parsed rows of a (optionally gzip) JSONL file, blank lines skipped, at most `limit` rows."""
    path = Path(path)
    name = name or str(path)
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{name}: row {len(rows)} is not valid JSON ({err.msg})") from None
    return rows


def check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    return limit


def check_row(row, name: str, index: int) -> dict:
    if not isinstance(row, dict):
        raise ValueError(f"{name}: row {index} is not a JSON object")
    return row


def string_field(row: dict, field: str, name: str, index: int, allow_empty: bool = False) -> str:
    """row[field], which must be a string, and unless `allow_empty` one that is not blank (responses
    may be empty: the real UltraFeedback data has a few empty chosen/rejected answers)."""
    value = check_row(row, name, index).get(field)
    if not isinstance(value, str):
        raise ValueError(f"{name}: row {index} has no string field {field!r}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{name}: row {index} has an empty string field {field!r}")
    return value
