"""What the generators of docs/ share (docs/update_readme.py writes docs/results.md, docs/update_study.py
docs/study.md and its README line): a finished run's files, read with errors that name the file; the
commit a run was made at; figures copied into docs/ (figures/ is generated and not versioned); and a
README line between markers, so that a generator rewrites its own line and nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


class DocInputError(ValueError):
    """A run's file that a page cannot be written from; the message is one line naming the file."""


def _first_line(err: BaseException) -> str:
    """An exception's message as one line (pandas' parser errors span several)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def input_error(path: str | Path, err: BaseException) -> DocInputError:
    """A reader's error as one line that names `path` (pandas' own messages may not)."""
    message = _first_line(err)
    return DocInputError(message if str(path) in message else f"{path}: {message}")


def require_file(path: str | Path, hint: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DocInputError(f"{path} is missing: {hint}")
    return path


def read_json_object(path: str | Path, hint: str) -> dict:
    path = require_file(path, hint)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DocInputError(f"{path} is not JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(data, dict):
        raise DocInputError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def commit_text(provenance: dict) -> str:
    """The commit a provenance record names (10 characters), and whether tracked files differed from it,
    since then the commit alone does not say what ran."""
    commit = (provenance.get("git_commit") or "unknown")[:10]
    return commit + (" with uncommitted changes" if provenance.get("git_dirty") else "")


def copy_figure(source: str | Path, dest: str | Path) -> Path:
    source = require_file(source, "the run did not draw it")
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    return Path(dest)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_marked(text: str, name: str, content: str, where: str = "README.md") -> str:
    """`text` with what lies between the `name` markers replaced by `content`; the markers stay, so the
    next run finds them again."""
    start, end = markers(name)
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise DocInputError(f"{where} needs exactly one {start} followed by one {end}")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}{content}{end}{tail}"
