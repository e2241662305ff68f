"""results/metrics.csv: every evaluation stage's aggregate rows with the run's model, objective,
beta and seed, plus the alignment tax of every forgetting score (`gemsft.report.alignment_tax`, the
same pairs the summary bootstraps), one row per seed."""

from __future__ import annotations

import csv
from pathlib import Path

from gemsft import files
from gemsft.report.alignment_tax import alignment_tax, paired_rows, tax_metric

COLUMNS = ("model", "objective", "beta", "seed", "task", "metric", "k", "value")


def _record(stage: dict, row: dict, metric: str, value: float) -> dict:
    # repr: the shortest text that reads back as the same float, so the file is exact and stable
    return {**stage["run"], "task": row["task"], "metric": metric, "k": row["k"], "value": repr(float(value))}


def metrics_records(stages: list[dict]) -> list[dict]:
    """The table's rows, sorted so the file is deterministic."""
    records = [_record(stage, row, row["metric"], row["value"]) for stage in stages for row in stage["rows"]]
    for stage, row, _, base_row in paired_rows(stages):
        tax = alignment_tax(float(base_row["value"]), float(row["value"]))
        records.append(_record(stage, row, tax_metric(row["metric"]), tax))
    records.sort(key=lambda r: tuple(str(r[c]) for c in COLUMNS[:-1]))
    return records


def write_metrics_table(stage_paths: list[str | Path], out_csv: str | Path) -> int:
    records = metrics_records([files.read_json(path) for path in stage_paths])
    with files.atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({c: ("" if record[c] is None else record[c]) for c in COLUMNS})
    return len(records)
