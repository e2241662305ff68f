"""The verdict on each of the paper's claims (`gemsft.report.claims.CLAIMS`), per model, from the
evaluation stages' per-item values: `results/claims.csv`.

A claim compares arm A with arm B (GEM at the paper's beta, else the linear GEM, which the row then
names; CE; the pre-trained model) on one (task, metric, k) of the data source, or for the alignment
tax on the forgetting tasks of report.knowledge_tasks, paired per document: tax_A - tax_B with each
document's tax base - tuned (`gemsft.report.alignment_tax`). The difference A - B and its interval
are the paired bootstrap of `gemsft.report.paired`. The verdict:

- supported: the interval excludes 0 on the side the paper claims;
- contradicted: it excludes 0 on the other side;
- inconclusive: it contains 0;
- untestable: an arm, its metric or its per-item values are missing, the arms share no item or seed,
  or both arms sit at the metric's floor or at its ceiling (`gemsft.report.bounds`); `reason` says which.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from gemsft import files
from gemsft.config import BASE_OBJECTIVE, NO_BETA, beta_label
from gemsft.report.alignment_tax import AVERAGE as TAX_AVERAGE, document_taxes, paired_rows, tax_metric
from gemsft.report.bounds import METRIC_BOUNDS, shared_bound
from gemsft.report.cells import DIGITS
from gemsft.report.claims import (BETA_OBJECTIVES, CLAIMS, CLAIMS_COLUMNS, CONTRADICTED, COUNTERPART_FALLBACK,
                                  INCONCLUSIVE, PAPER_BETA, SUPPORTED, TASK_SEPARATOR, UNTESTABLE, Claim,
                                  metric_text)
from gemsft.report.labels import objective_label
from gemsft.report.paired import Items, pair_seeds, paired_bootstrap, paired_stratum
from gemsft.report.summary import csv_cell

SOURCES = ("world", "real")
DEFAULT_KNOWLEDGE_TASKS = (("knowledge", "acc"),)


class Unjudged(Exception):
    """A claim that cannot be judged; the message is the row's reason."""


class ItemIndex:
    """Every stage's per-item rows by run, seed and (task, metric, k), the (run, task, metric, k) of
    every aggregate row, and for each forgetting score of a fine-tuned seed the base model's rows it
    is taxed against."""

    def __init__(self, stages: Iterable[dict]):
        stages = list(stages)
        self.items: dict[tuple, dict[int, dict[tuple, dict[str, dict]]]] = defaultdict(lambda: defaultdict(dict))
        self.reported: set[tuple] = set()
        for stage in stages:
            run, seed = self.run_key(stage), int(stage["run"]["seed"])
            for row in stage.get("rows") or []:
                self.reported.add((run, (row["task"], row["metric"], row["k"])))
            for row in stage.get("per_prompt") or []:
                self.items[run][seed].setdefault((row["task"], row["metric"], row["k"]), {})[row["prompt_id"]] = row
        # The base seed each tuned score is taxed against: alignment_tax's rule (the lowest base seed).
        self.base_seed: dict[tuple, int] = {}
        for stage, row, base_stage, _ in paired_rows(stages):
            key = (self.run_key(stage), int(stage["run"]["seed"]), (row["task"], row["metric"], row["k"]))
            self.base_seed[key] = int(base_stage["run"]["seed"])
        self.models = sorted({run[0] for run in self.items} | {run[0] for run, _ in self.reported})

    @staticmethod
    def run_key(stage: dict) -> tuple[str, str, str]:
        run = stage["run"]
        return str(run["model"]), str(run["objective"]), beta_label(run["beta"])

    def has_run(self, run: tuple) -> bool:
        return run in self.items or any(r == run for r, _ in self.reported)

    def seeds(self, run: tuple, targets: list[tuple]) -> dict[int, list[Items]]:
        """{seed: Items of each target} over the seeds that kept per-item values of every target."""
        found = self.items.get(run, {})
        return {seed: [Items.from_rows(by_target[t]) for t in targets]
                for seed, by_target in sorted(found.items()) if all(by_target.get(t) for t in targets)}

    def taxes(self, run: tuple, targets: list[tuple]) -> dict[int, list[Items]]:
        """{seed: per-document alignment taxes of each target} over the seeds taxed on every target."""
        base = (run[0], BASE_OBJECTIVE, NO_BETA)
        out = {}
        for seed, by_target in sorted(self.items.get(run, {}).items()):
            keys = [(run, seed, t) for t in targets]
            if not all(k in self.base_seed and by_target.get(k[2]) for k in keys):
                continue
            taxes = [document_taxes(self.items[base][self.base_seed[k]].get(k[2]) or {}, by_target[k[2]])
                     for k in keys]
            out[seed] = [Items(t, dict.fromkeys(t, 1.0)) for t in taxes]
        return out


def _beta(objective: str) -> str:
    return PAPER_BETA if objective in BETA_OBJECTIVES else NO_BETA


def _label(run: tuple) -> str:
    return objective_label(run[1], run[2])


def _arm(index: ItemIndex, model: str, objective: str, targets: list[tuple], tax: bool) -> tuple[tuple, dict, str]:
    """(run, {seed: [Items]}, note) of one side: the claim's objective, else its fallback (the note
    then says so); Unjudged when neither ran or neither has the values."""
    candidates = [(model, o, _beta(o)) for o in (objective, COUNTERPART_FALLBACK.get(objective)) if o]
    ran = [run for run in candidates if index.has_run(run)]
    if not ran:
        raise Unjudged(f"no run of {' or '.join(_label(r) for r in candidates)}")
    for run in ran:
        seeds = index.taxes(run, targets) if tax else index.seeds(run, targets)
        if seeds:
            return run, seeds, "" if run == candidates[0] else f"{_label(run)} stands in for {_label(candidates[0])}"
    note = "" if ran[0] == candidates[0] else f"{_label(candidates[0])} not run"
    try:
        _missing(index, ran[0], targets)
    except Unjudged as why:
        raise Unjudged("; ".join(filter(None, (str(why), note)))) from None


def _missing(index: ItemIndex, run: tuple, targets: list[tuple]):
    """Unjudged: the run lacks a target, or has only its aggregate."""
    what = " and ".join(metric_text(*t) for t in targets)
    if all((run, t) in index.reported for t in targets):
        raise Unjudged(f"no per-item values of {what} for {_label(run)}")
    raise Unjudged(f"missing {what} for {_label(run)}")


def _level(seeds: dict[int, list[Items]]) -> float:
    """An arm's mean score (over seeds, then targets) on all its items: the bound check of the tax."""
    def mean(items: Items) -> float:
        w = np.array([items.weights[p] for p in items.values])
        v = np.array(list(items.values.values()))
        ok = ~np.isnan(v)
        return float((v[ok] * w[ok]).sum() / w[ok].sum())

    return float(np.mean([np.mean([mean(i) for i in per_seed]) for per_seed in seeds.values()]))


def paired_estimate(seeds_a: dict, seeds_b: dict, label_a: str, label_b: str, task: str, n_resamples: int,
                    level: float, rng: np.random.Generator):
    """The paired bootstrap of A − B over the seeds both arms have and the items both answered;
    Unjudged (with the reason) when no seed or no item is shared."""
    pairs = [[paired_stratum(x, y) for x, y in zip(a, b)] for a, b in pair_seeds(seeds_a, seeds_b)]
    if not pairs:
        raise Unjudged(f"no seed in common ({label_a}: {', '.join(map(str, seeds_a))}; "
                       f"{label_b}: {', '.join(map(str, seeds_b))})")
    if any(len(stratum) == 0 for pair in pairs for stratum in pair):
        raise Unjudged(f"no item of {task} scored for both {label_a} and {label_b}")
    return paired_bootstrap(pairs, n_resamples, level, rng)


def verdict(direction: str, low: float, high: float) -> str:
    """SUPPORTED / CONTRADICTED / INCONCLUSIVE from the interval of A - B and the claimed direction."""
    if direction not in (">", "<"):
        raise ValueError(f"claim direction must be '>' or '<', got {direction!r}")
    if low > 0:
        return SUPPORTED if direction == ">" else CONTRADICTED
    if high < 0:
        return SUPPORTED if direction == "<" else CONTRADICTED
    return INCONCLUSIVE


def _shown(claim: Claim, source: str, knowledge_tasks) -> tuple[str, str, list[tuple]]:
    """(task, metric) of the claim's row and the (task, metric, k) targets it is judged on."""
    if claim.metric == TAX_AVERAGE:
        targets = [(t, m, None) for t, m in knowledge_tasks]
        metrics = {m for _, m in knowledge_tasks}
        metric = tax_metric(next(iter(metrics))) if len(metrics) == 1 else TAX_AVERAGE
        return TASK_SEPARATOR.join(t for t, _ in knowledge_tasks), metric, targets
    task, metric = claim.target(source)
    return task, metric, [(task, metric, claim.k)]


def _bound_reason(claim: Claim, metric: str, knowledge_tasks, a, b, levels) -> str | None:
    if claim.metric == TAX_AVERAGE:  # the taxes have no bound; the accuracies they come from do
        bounds = {METRIC_BOUNDS.get(m) for _, m in knowledge_tasks}
        scored = knowledge_tasks[0][1]
        if len(bounds) != 1:
            return None
        bound = shared_bound(scored, *levels)
        shown = ", ".join(sorted({m for _, m in knowledge_tasks}))
        return None if bound is None else f"both at {bound} of {shown} ({levels[0]:.1f} and {levels[1]:.1f})"
    bound = shared_bound(metric, a, b, k=claim.k)  # k: the ceiling of a CEILING_IS_K metric
    digits = DIGITS.get(metric, 1)
    return None if bound is None else f"both at {bound} ({a:.{digits}f} and {b:.{digits}f})"


def judge(index: ItemIndex, claim: Claim, model: str, source: str, knowledge_tasks=DEFAULT_KNOWLEDGE_TASKS,
          n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """claims.csv's row of one claim and model."""
    task, metric, targets = _shown(claim, source, knowledge_tasks)
    tax = claim.metric == TAX_AVERAGE
    row = dict.fromkeys(CLAIMS_COLUMNS, math.nan)
    row.update(id=claim.id, model=model, claim=claim.description, task=task, metric=metric, k=claim.k,
               arm_a=_label((model, claim.objective_a, _beta(claim.objective_a))),
               arm_b=_label((model, claim.objective_b, _beta(claim.objective_b))), direction=claim.direction,
               n_items=None, n_seeds=None, verdict=UNTESTABLE, reason="")
    notes = []  # a stand-in arm is named whatever the verdict
    try:
        if tax:
            base = (model, BASE_OBJECTIVE, NO_BETA)
            if not index.has_run(base):
                raise Unjudged(f"no run of {_label(base)} (the alignment tax is measured against it)")
            if not index.seeds(base, targets):
                _missing(index, base, targets)
        arms = []
        for objective in (claim.objective_a, claim.objective_b):
            run, seeds, note = _arm(index, model, objective, targets, tax)
            arms.append((run, seeds))
            notes += [note] if note else []
        (run_a, seeds_a), (run_b, seeds_b) = arms
        row.update(arm_a=_label(run_a), arm_b=_label(run_b))
        # One generator per row, seeded from the row's key: a claim's interval does not depend on
        # which other claims or models are judged beside it.
        rng = np.random.default_rng([seed, *map(ord, f"{model}|{claim.id}")])
        est = paired_estimate(seeds_a, seeds_b, row["arm_a"], row["arm_b"], task, n_resamples, level, rng)
        row.update(value_a=est.value_a, value_b=est.value_b, difference=est.difference, ci_low=est.ci_low,
                   ci_high=est.ci_high, n_items=est.n_items, n_seeds=est.n_seeds)
        levels = (_level(index.seeds(run_a, targets)), _level(index.seeds(run_b, targets))) if tax else None
        bound = _bound_reason(claim, metric, knowledge_tasks, est.value_a, est.value_b, levels)
        if bound is not None:
            raise Unjudged(bound)
        row["verdict"] = verdict(claim.direction, est.ci_low, est.ci_high)
    except Unjudged as why:
        notes.insert(0, str(why))
    row["reason"] = "; ".join(notes)
    return row


def judge_claims(stages: Iterable[dict], source: str, knowledge_tasks=DEFAULT_KNOWLEDGE_TASKS,
                 n_resamples: int = 1000, level: float = 0.95, seed: int = 0, claims=CLAIMS) -> list[dict]:
    """Every claim for every model of the stages: claims.csv's rows, by model then in CLAIMS order."""
    if source not in SOURCES:
        raise ValueError(f"data.source must be one of {', '.join(SOURCES)}; got {source!r}")
    knowledge_tasks = [tuple(pair) for pair in knowledge_tasks]
    if not knowledge_tasks or any(len(pair) != 2 for pair in knowledge_tasks):
        raise ValueError(f"report.knowledge_tasks must be [task, metric] pairs; got {knowledge_tasks!r}")
    index = ItemIndex(stages)
    if not index.models:
        raise ValueError("no evaluation stage has any rows: nothing to judge the claims on")
    return [judge(index, c, model, source, knowledge_tasks, n_resamples, level, seed)
            for model in index.models for c in claims]


def write_claims(stage_paths: list[str], out_csv: str, source: str, knowledge_tasks=DEFAULT_KNOWLEDGE_TASKS,
                 n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> list[dict]:
    stages = []
    for path in stage_paths:
        stage = files.read_json(path)
        if not isinstance(stage, dict) or not isinstance(stage.get("run"), dict) or "seed" not in stage["run"]:
            raise ValueError(f"{path} is not an evaluation stage: it has no 'run' with a seed")
        stages.append(stage)
    rows = judge_claims(stages, source, knowledge_tasks, n_resamples, level, seed)
    with files.atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CLAIMS_COLUMNS)
        for row in rows:
            writer.writerow([csv_cell(row[c]) for c in CLAIMS_COLUMNS])
    return rows
