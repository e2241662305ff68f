"""95% bootstrap intervals for every reported number: over prompts, and over seeds when a run has several.

Every evaluation stage keeps its per-prompt values (`gemsft.evaluate.stage`); a number is
link(weighted mean over prompts), averaged over seeds. Its interval is the percentile interval of
that statistic under a two-level bootstrap: resample the seeds with replacement, then the prompts of
each drawn seed with replacement. With one seed this is the ordinary percentile bootstrap over
prompts; a metric without per-prompt values (parameter distance) gets an interval only from several
seeds. The alignment tax (`gemsft.report.alignment_tax`) is paired: per document, base score - tuned
score, resampled together.

`results/summary.csv`: one row per (model, objective, beta, task, metric, k) with value, ci_low,
ci_high, n_prompts and n_seeds; the tables and figures read only this file.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from gemsft import files
from gemsft.report.alignment_tax import alignment_tax, document_taxes, paired_rows, tax_metric

SUMMARY_COLUMNS = ("model", "objective", "beta", "task", "metric", "k", "value", "ci_low", "ci_high",
                   "n_prompts", "n_seeds")


@dataclass
class SeedValues:
    """One seed's number: its aggregate value and (if the stage kept them) per-prompt values."""

    value: float
    values: np.ndarray | None = None  # per prompt, NaNs dropped
    weights: np.ndarray | None = None
    link: str | None = None


@dataclass
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    n_prompts: int
    n_seeds: int
    extra: dict = field(default_factory=dict)


def _link(values: np.ndarray, link: str | None) -> np.ndarray:
    """`gemsft.evaluate.stage.LINKS`, vectorised."""
    if link is None:
        return values
    if link == "exp":
        return np.exp(values)
    raise ValueError(f"unknown link {link!r}")


def _resampled_means(seed: SeedValues, draws: int, rng: np.random.Generator) -> np.ndarray:
    """`draws` bootstrap replicates of one seed's statistic (prompts resampled with replacement)."""
    n = len(seed.values)
    idx = rng.integers(0, n, size=(draws, n))
    w = seed.weights[idx]
    return _link((seed.values[idx] * w).sum(1) / w.sum(1), seed.link)


def bootstrap(seeds: list[SeedValues], n_resamples: int = 1000, level: float = 0.95,
              rng: np.random.Generator | None = None) -> Estimate:
    """Point estimate (mean over seeds) and percentile interval of the two-level bootstrap."""
    if not seeds:
        raise ValueError("bootstrap needs at least one seed")
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    rng = rng or np.random.default_rng(0)
    value = float(np.mean([s.value for s in seeds]))
    per_prompt = all(s.values is not None and len(s.values) > 0 for s in seeds)
    n_prompts = int(sum(len(s.values) for s in seeds) / len(seeds)) if per_prompt else 0
    if (not per_prompt and len(seeds) == 1) or math.isnan(value):
        return Estimate(value, math.nan, math.nan, n_prompts, len(seeds))
    # Replicates: draw seeds, then for each drawn slot an independent prompt resample of that seed.
    picks = rng.integers(0, len(seeds), size=(n_resamples, len(seeds))) if len(seeds) > 1 \
        else np.zeros((n_resamples, 1), dtype=int)
    stats = np.zeros(n_resamples)
    for slot in range(picks.shape[1]):
        if per_prompt:
            replicate = np.stack([_resampled_means(s, n_resamples, rng) for s in seeds])  # (seeds, draws)
            stats += replicate[picks[:, slot], np.arange(n_resamples)]
        else:
            stats += np.array([seeds[i].value for i in picks[:, slot]])
    stats /= picks.shape[1]
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return Estimate(value, float(low), float(high), n_prompts, len(seeds))


# --------------------------------------------------------------------------- from stage files


def _key(run: dict, row: dict) -> tuple:
    return (run["model"], run["objective"], run["beta"], row["task"], row["metric"], row["k"])


def _per_prompt_groups(stage: dict) -> dict[tuple, dict[str, dict]]:
    groups: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for row in stage.get("per_prompt") or []:
        groups[(row["task"], row["metric"], row["k"])][row["prompt_id"]] = row
    return groups


def _seed_values(value: float, rows: dict[str, dict] | None) -> SeedValues:
    if not rows:
        return SeedValues(float(value))
    finite = [r for r in rows.values() if not math.isnan(r["value"])]
    first = next(iter(rows.values()))
    return SeedValues(float(value), np.array([r["value"] for r in finite], dtype=float),
                      np.array([r.get("weight", 1.0) for r in finite], dtype=float), first.get("link"))


def collect(stages: list[dict]) -> dict[tuple, list[SeedValues]]:
    """{(model, objective, beta, task, metric, k): one SeedValues per seed}, plus the paired
    alignment tax (`alignment_tax_<metric>`) of every tuned run's forgetting scores against the base
    model's."""
    table: dict[tuple, list[SeedValues]] = defaultdict(list)
    stages = sorted(stages, key=lambda s: (s["run"]["model"], s["run"]["objective"], s["run"]["beta"],
                                           s["run"]["seed"]))
    groups = {id(stage): _per_prompt_groups(stage) for stage in stages}
    for stage in stages:
        for row in stage["rows"]:
            rows = groups[id(stage)].get((row["task"], row["metric"], row["k"]))
            table[_key(stage["run"], row)].append(_seed_values(row["value"], rows))
    for stage, row, base_stage, base_row in paired_rows(stages):
        score = (row["task"], row["metric"], row["k"])
        documents = document_taxes(groups[id(base_stage)].get(score) or {}, groups[id(stage)].get(score) or {})
        key = _key(stage["run"], {**row, "metric": tax_metric(row["metric"])})
        table[key].append(_seed_values(alignment_tax(float(base_row["value"]), float(row["value"])),
                                       {pid: {"value": tax} for pid, tax in documents.items()}))
    return table


def summarize(stages: list[dict], n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> list[dict]:
    """Summary rows (SUMMARY_COLUMNS), sorted; deterministic for a given `seed`."""
    rows = []
    for key, seeds in sorted(collect(stages).items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        # One generator per row, seeded from the row's key: a row's interval does not depend on
        # which other runs are in the summary.
        rng = np.random.default_rng([seed, *map(ord, "|".join(str(x) for x in key))])
        est = bootstrap(seeds, n_resamples, level, rng)
        rows.append(dict(zip(SUMMARY_COLUMNS, (*key, est.value, est.ci_low, est.ci_high, est.n_prompts,
                                               est.n_seeds))))
    return rows


def csv_cell(value) -> str:
    """A CSV cell: empty for None and NaN, floats at full precision (repr)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_summary(stage_paths: list[str], out_csv: str, n_resamples: int = 1000, level: float = 0.95,
                  seed: int = 0) -> int:
    rows = summarize([files.read_json(p) for p in stage_paths], n_resamples, level, seed)
    with files.atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SUMMARY_COLUMNS)
        for row in rows:
            writer.writerow([csv_cell(row[c]) for c in SUMMARY_COLUMNS])
    return len(rows)

