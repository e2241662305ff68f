"""The one shape every evaluation stage writes, and the tidy table they are gathered into.

A stage JSON holds the run it belongs to, provenance, aggregate `rows` (task, metric, k, value) and
`per_prompt` values of the same metrics (for bootstrap intervals over prompts in the report). A
per-prompt row may carry a `weight` (e.g. its token count, for token-level means) and a `link`
applied to the weighted mean ("exp": perplexity from per-prompt mean NLL); a row's aggregate is
always link(weighted mean of its per-prompt values).
`results/metrics.csv` is every stage's rows with the run's model, objective, beta and seed.

Every stage that reads samples also reports `truncated`: the percentage of its samples that ran to
max_tokens (finish reason "length") instead of ending their turn, since the scores of cut-off
answers are not the model's answers (the report flags a run over
`gemsft.report.registry.TRUNCATED_FLAG_PERCENT`).
"""

from __future__ import annotations

import math
from pathlib import Path

from gemsft import files
from gemsft.provenance import provenance
from gemsft.sample.plan import FINISH_REASONS


def metric(task: str, name: str, value: float, k: int | None = None, **extra) -> dict:
    return {"task": task, "metric": name, "k": k, "value": float(value), **extra}


LINKS = {None: lambda x: x, "exp": math.exp}


def weighted_mean(values, weights, link: str | None = None) -> float:
    """link(sum w v / sum w) over the finite values; NaN when there are none."""
    pairs = [(v, w) for v, w in zip(values, weights) if not math.isnan(v)]
    total = math.fsum(w for _, w in pairs)
    if not pairs or total == 0:
        return math.nan
    return LINKS[link](math.fsum(v * w for v, w in pairs) / total)


def mean_rows(per_prompt: list[dict]) -> list[dict]:
    """Aggregate rows: link(weighted mean) over prompts of each (task, metric, k), NaNs skipped."""
    groups: dict[tuple, list[dict]] = {}
    for row in per_prompt:
        groups.setdefault((row["task"], row["metric"], row["k"]), []).append(row)
    rows = []
    for (task, name, k), group in groups.items():
        values = [r["value"] for r in group]
        value = weighted_mean(values, [r.get("weight", 1.0) for r in group], group[0].get("link"))
        rows.append(metric(task, name, value, k, n_prompts=sum(not math.isnan(v) for v in values)))
    return rows


def write_stage(path: str | Path, stage: str, run: dict, rows: list[dict], per_prompt: list[dict],
                config: dict, **extra) -> dict:
    result = {"stage": stage, "run": run, "provenance": provenance(config), "rows": rows,
              "per_prompt": per_prompt, **extra}
    files.write_json(path, result)
    return result


def run_fields(wildcards) -> dict:
    return {"model": wildcards.model, "objective": wildcards.objective, "beta": wildcards.beta,
            "seed": int(wildcards.seed)}


# --------------------------------------------------------------------------- truncated samples

TRUNCATED = "truncated"


def truncation_rows(task: str, prompt_ids: list[str], samples: list[dict]) -> list[dict]:
    """Per prompt: the percentage of its samples with finish reason "length", weighted by its number
    of samples, so the aggregate is the percentage over all of the task's samples."""
    counts: dict[str, list[int]] = {pid: [0, 0] for pid in prompt_ids}
    for row in samples:
        reason = row.get("finish_reason")
        if reason not in FINISH_REASONS:
            raise ValueError(f"{task} sample {row.get('sample_index')!r} of prompt {row.get('prompt_id')!r} has "
                             f"finish_reason {reason!r}; expected one of {', '.join(FINISH_REASONS)}")
        if row["prompt_id"] in counts:
            counts[row["prompt_id"]][0] += 1
            counts[row["prompt_id"]][1] += reason == "length"
    return [metric(task, TRUNCATED, 100.0 * cut / n, prompt_id=pid, weight=float(n))
            for pid, (n, cut) in counts.items() if n]
