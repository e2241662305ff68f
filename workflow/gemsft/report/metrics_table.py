"""results/metrics.csv: every evaluation stage's aggregate rows with the run's model, objective,
beta and seed, plus the alignment tax (base - fine-tuned) of every forgetting metric."""

from __future__ import annotations

import csv
from pathlib import Path
from gemsft import files


COLUMNS = ("model", "objective", "beta", "seed", "task", "metric", "k", "value")


def alignment_tax_records(records: list[dict], base_objective: str = "base") -> list[dict]:
    """Section 6.2: alignment tax = base model score - fine-tuned score, per knowledge metric and model."""
    base = {(r["model"], r["metric"], r["k"]): float(r["value"]) for r in records
            if r["task"] == "knowledge" and r["objective"] == base_objective}
    taxes = []
    for r in records:
        key = (r["model"], r["metric"], r["k"])
        if r["task"] == "knowledge" and r["objective"] != base_objective and key in base:
            taxes.append({**r, "metric": f"alignment_tax_{r['metric']}", "value": repr(base[key] - float(r["value"]))})
    return taxes


def write_metrics_table(stage_paths: list[str | Path], out_csv: str | Path) -> int:
    """Gather every stage's rows into one tidy CSV, sorted so the file is deterministic."""
    records = []
    for path in stage_paths:
        stage = files.read_json(path)
        for row in stage["rows"]:
            records.append({**stage["run"], **{c: row[c] for c in ("task", "metric", "k")},
                            "value": repr(float(row["value"]))})
    records += alignment_tax_records(records)
    records.sort(key=lambda r: tuple(str(r[c]) for c in COLUMNS[:-1]))
    with files.atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({c: ("" if record[c] is None else record[c]) for c in COLUMNS})
    return len(records)
