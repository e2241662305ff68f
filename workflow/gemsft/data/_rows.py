"""Row validation shared by the real-data loaders and the leaderboard's mirror readers: a malformed
row is a one-line ValueError naming the file, the row index (0-based) and the field, never a silent
skip. Reading the rows is `gemsft.files.read_jsonl`'s job."""

from __future__ import annotations


def check_limit(limit: int | None, minimum: int = 0) -> int | None:
    """`limit` itself, checked to be None or an integer >= `minimum` (bools are not integers here)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < minimum):
        raise ValueError(f"limit must be an integer >= {minimum} or None, got {limit!r}")
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
