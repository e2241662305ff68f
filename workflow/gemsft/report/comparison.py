"""Every training objective against CE (config/objectives.yaml, docs/objectives.md): for each objective X
other than CE, the paired difference X − CE with its 95% interval on quality, each diversity metric,
code pass@k, math and forgetting, and the verdict on "X is more diverse than CE at no quality cost":
`results/comparison.csv` (COLUMNS).

The statistic is the claims' own (`gemsft.report.verdicts`, `gemsft.report.paired`): the stages'
per-item values gathered by the claims' item index, seed pairs by seed value, items paired by id, the
two-level percentile bootstrap; a row's generator is seeded from its key, so an interval does not
depend on which other objectives ran. The tasks are the claims' per data source
(`gemsft.report.claims.CLAIMS`):

- quality: the best-of-32 win rate of claim `bon32_win_rate`: under the world's oracle reward (the
  answers' true quality), the reward model's with real data;
- diversity: every chat diversity metric the runs report (N-gram, Self-BLEU, Sentence-BERT, EAD, the
  Vendi score and, in the world, distinct_k);
- pass@k: on the code task of claim `pass_at_100` (the world's code family, HumanEval with real data)
  at k = 1, 10 and 100 (PASS_KS);
- math: greedy accuracy and majority voting (claims `math_greedy`, `math_majority`);
- forgetting: the alignment tax on report.knowledge_tasks, paired per document against the pre-trained
  model (claim `alignment_tax`); X − CE > 0 means X forgets more.

The verdict on "X is more diverse than CE at no quality cost" reads two of those rows: D, the
Sentence-BERT diversity difference (VERDICT_DIVERSITY), and Q, the quality difference, each X − CE with
its 95% interval:

- contradicted: D's interval lies below 0, or Q's lies entirely below −MARGIN;
- untestable: neither contradicts, and D or Q could not be judged: a run or its per-item values is
  missing, or both runs sit at the metric's floor or at its ceiling (`gemsft.report.bounds`, the
  claims' check), where no difference can show;
- supported: D's interval lies above 0 and Q's above −MARGIN (non-inferiority);
- inconclusive: otherwise (D's interval contains 0, or Q's contains −MARGIN).

MARGIN, 2 win-rate points (of 0-100), was fixed with this module, before any run of
config/objectives.yaml:

- It is below the quality gain the paper reports for GEM over CE at best-of-32 (Table 3: 50.4 against
  47.3, 3.1 points). An objective that loses as much as that gain has given up what preserving
  diversity was for; at 2 points it keeps at least a third of it.
- It is above what this design can resolve only as superiority. The study's interval of the same
  difference (best-of-32 oracle win rate, 47 prompts x 3 seeds; docs/study.md) is about ±3.4 points
  wide, so at 2 points an objective whose point estimate is about 1.5 points above CE's passes, and one
  at CE's quality is inconclusive. A 1-point margin would ask for a 2.5-point gain, non-inferiority in
  name only; the study's design effect, 5 points, would call a loss larger than the paper's whole gain
  "no cost".
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from gemsft import files
from gemsft.config import BASE_OBJECTIVE, NO_BETA
from gemsft.objectives import OBJECTIVES
from gemsft.report.alignment_tax import AVERAGE as TAX_AVERAGE
from gemsft.report.claims import (CLAIMS, CONTRADICTED, INCONCLUSIVE, SUPPORTED, UNTESTABLE, VERDICTS,
                                  format_difference, metric_text)
from gemsft.report.labels import METRIC_NAMES, objective_label, run_sort_key
from gemsft.report.summary import csv_cell
from gemsft.report.verdicts import (DEFAULT_KNOWLEDGE_TASKS, SOURCES, ItemIndex, Unjudged, _bound_reason, _level,
                                    _missing, _shown, paired_estimate)

REFERENCE = "ce"  # every objective is paired against CE
MARGIN = 2.0  # win-rate points: the non-inferiority margin on quality (module docstring)
CLAIM = "more diverse than CE at no quality cost"
VERDICT_DIVERSITY = "sbert_diversity"
DIVERSITY_METRICS = ("ngram_diversity", "self_bleu_diversity", "sbert_diversity", "ead_diversity", "vendi_score",
                     "distinct_k")
DIVERSITY_TASK = "chat"
PASS_KS = (1, 10, 100)

QUALITY, DIVERSITY, PASS_AT_K, MATH, FORGETTING, VERDICT = MEASURES = (
    "quality", "diversity", "pass_at_k", "math", "forgetting", "verdict")

COLUMNS = ("model", "objective", "beta", "arm", "measure", "task", "metric", "k", "value_x", "value_ce",
           "difference", "ci_low", "ci_high", "n_items", "n_seeds", "verdict", "reason")
_NUMBERS = ("k", "value_x", "value_ce", "difference", "ci_low", "ci_high", "n_items", "n_seeds")

_CLAIMS = {c.id: c for c in CLAIMS}


class Measure(NamedTuple):
    """One row of an objective's comparison: a claim of the paper (for its task per data source) at a k."""

    measure: str
    claim_id: str | None  # the claim whose task and metric it takes; None for a diversity metric
    metric: str | None = None  # a diversity metric
    k: int | None = None


def _claim(measure: Measure):
    """The claim a measure is judged like: the paper's own (its task per source), else the diversity one's
    with this measure's metric and k; objective_a is filled in per objective."""
    if measure.claim_id is not None:
        claim = _CLAIMS[measure.claim_id]
        return claim._replace(k=measure.k) if measure.k is not None else claim
    base = _CLAIMS["diversity_sbert"]
    return base._replace(id=f"diversity_{measure.metric}", metric=measure.metric, k=measure.k, world=None)


def quality_target(source: str) -> tuple[str, str, int]:
    """(task, metric, k) of the quality row: the claims' best-of-32 win rate for `source`."""
    claim = _CLAIMS["bon32_win_rate"]
    return (*claim.target(source), claim.k)


def code_task(source: str) -> str:
    """The code task pass@k is read on: the claims' pass@100 task for `source`."""
    return _CLAIMS["pass_at_100"].target(source)[0]


def _diversity_ks(index: ItemIndex, model: str, metric: str) -> list:
    """The k of each (chat, metric) row the model's runs report (the sample count for the Vendi score and
    distinct_k, None for the others)."""
    found = {key[2] for run, seeds in index.items.items() if run[0] == model
             for by_target in seeds.values() for key in by_target if key[:2] == (DIVERSITY_TASK, metric)}
    found |= {t[2] for run, t in index.reported if run[0] == model and t[:2] == (DIVERSITY_TASK, metric)}
    return sorted(found, key=lambda k: -1 if k is None else k)


def measures(index: ItemIndex, model: str) -> list[Measure]:
    """The rows of each objective's comparison, in the table's order. The Sentence-BERT diversity row is
    always there (the verdict reads it); another diversity metric only where a run reports it."""
    rows = [Measure(QUALITY, "bon32_win_rate")]
    for metric in DIVERSITY_METRICS:
        ks = _diversity_ks(index, model, metric) or ([None] if metric == VERDICT_DIVERSITY else [])
        rows += [Measure(DIVERSITY, None, metric, k) for k in ks]
    rows += [Measure(PASS_AT_K, "pass_at_100", k=k) for k in PASS_KS]
    rows += [Measure(MATH, "math_greedy"), Measure(MATH, "math_majority"), Measure(FORGETTING, "alignment_tax")]
    return rows


def run_order(objective: str, beta=NO_BETA) -> tuple:
    """Objectives in the registry's order (the paper's six, then DFT, TS², EAFT, ASFT; the pre-trained
    model first), betas as the tables order them: the comparison's rows and figures."""
    names = [BASE_OBJECTIVE, *OBJECTIVES]
    return (names.index(objective) if objective in names else len(names), objective, run_sort_key(objective, beta))


def _order(run: tuple) -> tuple:
    return run_order(run[1], run[2])


def objective_runs(index: ItemIndex, model: str) -> list[tuple]:
    """Every (model, objective, beta) of the model other than CE and the pre-trained model."""
    runs = {run for run in index.items if run[0] == model} | {run for run, _ in index.reported if run[0] == model}
    return sorted((r for r in runs if r[1] not in (REFERENCE, BASE_OBJECTIVE)), key=_order)


def _arm(index: ItemIndex, run: tuple, targets: list[tuple], tax: bool) -> dict:
    """{seed: [Items]} of one run; Unjudged naming what is missing."""
    if not index.has_run(run):
        raise Unjudged(f"no run of {objective_label(run[1], run[2])}")
    seeds = index.taxes(run, targets) if tax else index.seeds(run, targets)
    if not seeds:
        _missing(index, run, targets)
    return seeds


def compare(index: ItemIndex, model: str, run_x: tuple, measure: Measure, source: str,
            knowledge_tasks=DEFAULT_KNOWLEDGE_TASKS, n_resamples: int = 1000, level: float = 0.95,
            seed: int = 0) -> dict:
    """comparison.csv's row of one objective and measure: X − CE, paired, with its interval; verdict
    UNTESTABLE (and the reason) when it cannot be judged, else empty."""
    claim = _claim(measure)
    task, metric, targets = _shown(claim, source, knowledge_tasks)
    tax = claim.metric == TAX_AVERAGE
    k = targets[0][2] if not tax else None
    ce = (model, REFERENCE, NO_BETA)
    row = dict.fromkeys(COLUMNS, math.nan)
    row.update(model=model, objective=run_x[1], beta=run_x[2], arm=objective_label(run_x[1], run_x[2]),
               measure=measure.measure, task=task, metric=metric, k=k, n_items=None, n_seeds=None, verdict="",
               reason="")
    try:
        if tax:
            base = (model, BASE_OBJECTIVE, NO_BETA)
            if not index.has_run(base):
                raise Unjudged(f"no run of {objective_label(BASE_OBJECTIVE)} (the alignment tax is measured against it)")
            if not index.seeds(base, targets):
                _missing(index, base, targets)
        seeds_x = _arm(index, run_x, targets, tax)
        seeds_ce = _arm(index, ce, targets, tax)
        rng = np.random.default_rng([seed, *map(ord, f"{model}|{run_x[1]}|{run_x[2]}|{claim.id}|{k}")])
        est = paired_estimate(seeds_x, seeds_ce, row["arm"], "CE", task, n_resamples, level, rng)
        row.update(value_x=est.value_a, value_ce=est.value_b, difference=est.difference, ci_low=est.ci_low,
                   ci_high=est.ci_high, n_items=est.n_items, n_seeds=est.n_seeds)
        levels = (_level(index.seeds(run_x, targets)), _level(index.seeds(ce, targets))) if tax else None
        bound = _bound_reason(claim, metric, knowledge_tasks, est.value_a, est.value_b, levels)
        if bound is not None:
            raise Unjudged(bound)
    except Unjudged as why:
        row.update(verdict=UNTESTABLE, reason=str(why))
    return row


# --------------------------------------------------------------------------- the verdict


def _interval(row: dict) -> str:
    return format_difference(row["difference"], row["ci_low"], row["ci_high"])


def _what(row: dict) -> str:
    return metric_text(row["task"], row["metric"], row["k"])


def diversity_verdict(diversity: dict, quality: dict, margin: float = MARGIN) -> tuple[str, str]:
    """(verdict, reason) of "X is more diverse than CE at no quality cost" from the Sentence-BERT
    diversity row and the quality row (each with difference, ci_low, ci_high, and verdict UNTESTABLE
    with its reason where it could not be judged)."""
    if not margin >= 0:
        raise ValueError(f"the non-inferiority margin must be a number >= 0, got {margin!r}")
    parts, contradicted, untestable, supported = [], [], [], 0
    for row, bound, words in ((diversity, 0.0, ("above 0", "below 0", "contains 0")),
                              (quality, -margin, (f"above -{margin:g}", f"below -{margin:g}",
                                                  f"contains -{margin:g}"))):
        what = _what(row)
        if row.get("verdict") == UNTESTABLE or any(pd.isna(row[c]) for c in ("ci_low", "ci_high")):
            untestable.append(f"{what}: {row.get('reason') or 'no interval'}")
            continue
        if row["ci_low"] > bound:
            supported += 1
            parts.append(f"{what} {_interval(row)} {words[0]}")
        elif row["ci_high"] < bound:
            contradicted.append(f"{what} {_interval(row)} {words[1]}")
        else:
            parts.append(f"{what} {_interval(row)} {words[2]}")
    if contradicted:
        return CONTRADICTED, "; ".join(contradicted + parts + untestable)
    if untestable:
        return UNTESTABLE, "; ".join(untestable + parts)
    return (SUPPORTED if supported == 2 else INCONCLUSIVE), "; ".join(parts)


def verdict_row(rows: Sequence[dict], margin: float = MARGIN) -> dict:
    """The verdict row of one objective, from its rows (the quality row and the Sentence-BERT row)."""
    quality = next(r for r in rows if r["measure"] == QUALITY)
    diversity = next(r for r in rows if r["measure"] == DIVERSITY and r["metric"] == VERDICT_DIVERSITY)
    verdict, reason = diversity_verdict(diversity, quality, margin)
    row = dict.fromkeys(COLUMNS, math.nan)
    row.update({c: quality[c] for c in ("model", "objective", "beta", "arm")},
               measure=VERDICT, task=f"{diversity['task']}", metric=f"{VERDICT_DIVERSITY} vs {quality['metric']}",
               k=None, n_items=None, n_seeds=None, verdict=verdict, reason=reason)
    return row


# --------------------------------------------------------------------------- all objectives


def compare_objectives(stages: Iterable[dict], source: str, knowledge_tasks=DEFAULT_KNOWLEDGE_TASKS,
                       n_resamples: int = 1000, level: float = 0.95, seed: int = 0,
                       margin: float = MARGIN) -> list[dict]:
    """comparison.csv's rows: per model, per objective other than CE (in the registry's order), its
    measures' rows then its verdict row."""
    if source not in SOURCES:
        raise ValueError(f"data.source must be one of {', '.join(SOURCES)}; got {source!r}")
    knowledge_tasks = [tuple(pair) for pair in knowledge_tasks]
    if not knowledge_tasks or any(len(pair) != 2 for pair in knowledge_tasks):
        raise ValueError(f"report.knowledge_tasks must be [task, metric] pairs; got {knowledge_tasks!r}")
    index = ItemIndex(stages)
    if not index.models:
        raise ValueError("no evaluation stage has any rows: nothing to compare")
    out = []
    for model in index.models:
        runs = objective_runs(index, model)
        if not runs:
            raise ValueError(f"model {model!r} has no objective besides CE to compare with it")
        wanted = measures(index, model)
        for run in runs:
            rows = [compare(index, model, run, m, source, knowledge_tasks, n_resamples, level, seed) for m in wanted]
            out += [*rows, verdict_row(rows, margin)]
    return out


def read_stages(paths: Iterable[str | os.PathLike]) -> list[dict]:
    stages = []
    for path in paths:
        stage = files.read_json(path)
        if not isinstance(stage, dict) or not isinstance(stage.get("run"), dict) or "seed" not in stage["run"]:
            raise ValueError(f"{path} is not an evaluation stage: it has no 'run' with a seed")
        stages.append(stage)
    return stages


def write_csv(rows: Iterable[dict], path: str | os.PathLike) -> None:
    """The rows as comparison.csv at `path` (the rule writes it through gemsft.files.atomic_path)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([csv_cell(row[c]) for c in COLUMNS])


def load_comparison(path: str | os.PathLike) -> pd.DataFrame:
    """comparison.csv with numbers as floats (NaN where empty) and text as text; ValueError naming the
    file for a missing column, an unknown measure or verdict, or an objective without its verdict row."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(missing)}")
    df = frame[list(COLUMNS)].copy()
    for column in _NUMBERS:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    if df.empty:
        raise ValueError(f"{path} has no rows")
    for i, (measure, verdict) in enumerate(zip(df["measure"], df["verdict"])):
        if measure not in MEASURES:
            raise ValueError(f"{path} row {i + 1}: measure {measure!r} is not one of {', '.join(MEASURES)}")
        allowed = VERDICTS if measure == VERDICT else ("", UNTESTABLE)
        if verdict not in allowed:
            raise ValueError(f"{path} row {i + 1}: verdict {verdict!r} of a {measure} row is not one of "
                             f"{', '.join(map(repr, allowed))}")
    arms = df[["model", "objective", "beta"]].drop_duplicates().itertuples(index=False)
    judged = set(df.loc[df["measure"] == VERDICT, ["model", "objective", "beta"]].itertuples(index=False))
    lacking = [a for a in arms if a not in judged]
    if lacking:
        raise ValueError(f"{path} has no verdict row for {objective_label(lacking[0].objective, lacking[0].beta)}")
    return df


def metric_title(metric: str, k) -> str:
    """A column title: "Sentence-BERT diversity", "Vendi score (k=32)"."""
    k = None if k is None or (isinstance(k, float) and math.isnan(k)) else int(k)
    name = METRIC_NAMES.get(metric, metric)
    return name if k is None else f"{name} (k={k})"
