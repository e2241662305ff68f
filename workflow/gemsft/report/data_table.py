"""The data table: what each data file held, what `real_data` dropped and why (its data_report.json),
and how many SFT rows the length policy left out (the runs' train_metrics.json).

The embedded world is generated clean and has no data report: its rows come from world.json's counts,
none dropped. Over-length rows are counted where the length policy is applied, by SFT, since only
there is the model's tokenizer known (`gemsft.data.write.LENGTH_POLICY_NOTE`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gemsft import files
from gemsft.data.world import FILES
from gemsft.data.write import DATA_REPORT, EMPTY_TURN

# Display titles of the drop reasons; a reason without one shows its own name.
REASONS = {EMPTY_TURN: "dropped: empty turn"}
SFT_COLUMNS = ["SFT: left out by length policy", "SFT: trained on"]


def source_file(data_dir: str | Path) -> Path:
    """The file the table reads from the data directory: data_report.json, or the world's world.json."""
    report = Path(data_dir) / DATA_REPORT
    return report if report.is_file() else Path(data_dir) / FILES["summary"]


def _data_entries(data_dir: Path) -> dict[str, dict]:
    """{output: entry as in data_report.json}; the world's from world.json's counts."""
    path = source_file(data_dir)
    if path.name == DATA_REPORT:
        entries = files.read_json(path).get("files")
        if not isinstance(entries, dict):
            raise ValueError(f"{path}: no 'files' mapping")
        return entries
    summary = files.read_json(path)
    if "counts" not in summary:
        raise ValueError(f"{path}: no 'counts' and no {DATA_REPORT} beside it")
    return {out: {"file": FILES.get(out, out), "dataset": "world", "rows_in": n, "rows_out": n, "dropped": {}}
            for out, n in summary["counts"].items()}


def _span(values: list[int]) -> str:
    """One number when every run agrees (same data, same tokenizer), else the range."""
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def data_table(data_dir: str | Path, train_metrics: list[str | Path], length_policy: dict) -> pd.DataFrame:
    """One row per data file; the SFT columns on sft_train only, from every run's rows (read) and
    examples (trained on). `length_policy`: {"policy", "max_length"} of the config's train section."""
    data_dir = Path(data_dir)
    entries = _data_entries(data_dir)
    runs = []
    for path in train_metrics:
        metrics = files.read_json(path)
        missing = [key for key in ("rows", "examples") if key not in metrics]
        if missing:
            raise ValueError(f"{path}: no {' or '.join(repr(k) for k in missing)} in the training metrics")
        runs.append(metrics)
    policy = f"{length_policy['policy']} at {length_policy['max_length']} tokens"
    reasons = {**REASONS, **{r: f"dropped: {r}" for e in entries.values() for r in e["dropped"] if r not in REASONS}}
    rows = []
    order = list(FILES)  # the pipeline's order (JSON files store their keys sorted); others last
    for out, entry in sorted(entries.items(), key=lambda item: (order.index(item[0]) if item[0] in order
                                                                else len(order), item[0])):
        row = {"file": entry["file"], "dataset": entry["dataset"], "rows in": str(entry["rows_in"]),
               **{title: str(entry["dropped"].get(reason, 0)) for reason, title in reasons.items()},
               "rows written": str(entry["rows_out"]), **dict.fromkeys(SFT_COLUMNS, "")}
        if out == "sft_train" and runs:
            row[SFT_COLUMNS[0]] = f"{_span([m['rows'] - m['examples'] for m in runs])} ({policy})"
            row[SFT_COLUMNS[1]] = _span([m["examples"] for m in runs])
        rows.append(row)
    columns = ["file", "dataset", "rows in", *reasons.values(), "rows written", *SFT_COLUMNS]
    return pd.DataFrame(rows, columns=columns, dtype=object)
