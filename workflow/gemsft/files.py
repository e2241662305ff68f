"""File I/O that never leaves a partial output behind: everything is written under a temporary
name in the destination's directory and renamed into place only when complete. Also the one
JSON-lines reader, whose errors name the file and line."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_jsonl(path: str | os.PathLike, limit: int | None = None, name: str | None = None) -> list:
    """Parsed rows of a JSONL file (gzip-compressed when its name ends in .gz), blank lines skipped,
    at most `limit` rows (None: all). A malformed line, bad JSON or bad UTF-8, is a one-line
    ValueError naming the file and the line (1-based, blank lines counted): "{name}:{line}: ...".
    `name` labels the file in errors (default: `path`; the data loaders pass the mirror-relative path)."""
    name = str(path) if name is None else name
    opener = gzip.open if Path(path).suffix == ".gz" else open
    rows = []
    with opener(path, "rb") as f:
        # Bytes, not text mode: an undecodable line is named by its number, and only "\n" ends a line.
        for lineno, raw in enumerate(f, start=1):
            if limit is not None and len(rows) >= limit:
                break
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{name}:{lineno}: not valid UTF-8 (byte {raw[err.start]:#04x} at offset "
                                 f"{err.start})") from None
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{name}:{lineno}: not valid JSON ({err.msg})") from None
    return rows
