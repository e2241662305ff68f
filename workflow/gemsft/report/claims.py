"""The paper beside the reproduction: the paper's numbers (paper_numbers.csv), its qualitative claims,
and whether each holds on our runs (the paper_vs_reproduction table)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from gemsft.config import NO_BETA
from gemsft.evaluate.stage import TRUNCATED
from gemsft.report.alignment_tax import AVERAGE as TAX_AVERAGE
from gemsft.report.cells import DIGITS, MISSING, Cells, Run, format_ci
from gemsft.report.labels import METRIC_NAMES, TASK_NAMES, objective_label
from gemsft.report.registry import TRUNCATED_FLAG_PERCENT
from gemsft.report.summary_reader import normalise, read_csv

PAPER_COLUMNS = ("source", "objective", "beta", "task", "metric", "k", "value", "note")
PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.csv")

# The paper ran GEM with h = log-sigmoid (Appendix B); where we have only the linear GEM, compare with it
# and say so in the "our run" column.
COUNTERPART_FALLBACK = {"gem_log_sigmoid": "gem"}
BETA_OBJECTIVES = ("gem", "gem_log_sigmoid")  # the objectives a claim's beta applies to


def load_paper(path=PAPER_NUMBERS) -> pd.DataFrame:
    return read_csv(path, required=PAPER_COLUMNS)[list(PAPER_COLUMNS)]


class Claim(NamedTuple):
    """The paper's qualitative claim that objective_a's metric is `direction` ('>' or '<') objective_b's.
    It is checked on the row of the paper's numbers for objective_a, at that row's beta."""
    description: str
    objective_a: str
    objective_b: str
    task: str
    metric: str
    k: int | None
    direction: str


_GEM = "gem_log_sigmoid"
PAPER_BETA = "0.7"  # Section 6 set-up: "We implement GEM with beta = 0.7"
CLAIMS = [
    Claim("GEM has higher entropy than CE", _GEM, "ce", "sft_test", "entropy", None, ">"),
    Claim("GEM has a higher BoN@32 win rate than CE", _GEM, "ce", "chat", "win_rate", 32, ">"),
    Claim("GEM has higher pass@100 than CE", _GEM, "ce", "humaneval", "pass_at_k", 100, ">"),
    *[Claim(f"GEM is more diverse than CE ({METRIC_NAMES[m]})", _GEM, "ce", "chat", m, None, ">")
      for m in ("ngram_diversity", "self_bleu_diversity", "sbert_diversity")],
    *[Claim(f"CE is less diverse than the pre-trained model ({METRIC_NAMES[m]})", "ce", "base", "chat", m, None, "<")
      for m in ("ngram_diversity", "self_bleu_diversity", "sbert_diversity")],
    Claim("GEM beats CE in greedy accuracy", _GEM, "ce", "math", "greedy_accuracy", None, ">"),
    Claim("GEM beats CE in majority voting", _GEM, "ce", "math", "majority_accuracy", 16, ">"),
    Claim("GEM beats CE in pass rate", _GEM, "ce", "math", "pass_rate", 16, ">"),
    Claim("GEM has a lower alignment tax than CE", _GEM, "ce", "knowledge", TAX_AVERAGE, None, "<"),
]


def _resolve(cells: Cells, model: str, objective: str, beta: str, task: str, metric: str, k):
    """Our run and value for a paper number: the same objective and beta, else its fallback objective."""
    for obj in (objective, COUNTERPART_FALLBACK.get(objective)):
        if obj is None:
            continue
        run = Run(model, obj, beta)
        found = cells.get(run, task, metric, k)
        if found is not None and not pd.isna(found[0]):
            return run, found
    return None, None


def _verdict(cells: Cells, claim: Claim, model: str, beta: str) -> tuple[str, str]:
    """("yes"/"no", CIs overlap "yes"/"no"/"no CI"), or MISSING for both when either side is absent."""
    a, b = (_resolve(cells, model, obj, beta if obj in BETA_OBJECTIVES else NO_BETA, claim.task, claim.metric,
                     claim.k)[1] for obj in (claim.objective_a, claim.objective_b))
    if a is None or b is None:
        return MISSING, MISSING
    holds = a[0] > b[0] if claim.direction == ">" else a[0] < b[0]
    if any(pd.isna(x) for x in (*a[1:], *b[1:])):
        overlap = "no CI"
    else:
        overlap = "yes" if a[1] <= b[2] and b[1] <= a[2] else "no"
    return ("yes" if holds else "no"), overlap


def evaluate_claims(summary: pd.DataFrame, claims=CLAIMS, beta: str = PAPER_BETA) -> pd.DataFrame:
    """Every claim on our runs, GEM at `beta`: one row per model and claim."""
    cells = Cells(summary)
    rows = [{"model": model, "claim": c.description,
             **dict(zip(("holds", "CIs overlap"), _verdict(cells, c, model, beta)))}
            for model in cells.models for c in claims]
    return pd.DataFrame(rows, columns=["model", "claim", "holds", "CIs overlap"], dtype=object)


def _what(objective: str, beta: str, task: str, metric: str, k) -> str:
    if metric == "win_rate":
        name = "win rate, single sample" if k == 1 else f"win rate, BoN@{k}"
    elif metric in ("pass_at_k", "pass_rate"):
        name = f"pass@{k}"
    elif metric == "majority_accuracy":
        name = f"majority@{k}"
    else:
        name = METRIC_NAMES.get(metric, metric) + ("" if k is None else f" (k={k})")
    return f"{objective_label(objective, beta)}: {TASK_NAMES.get(task, task)} {name}"


COMPARISON_COLUMNS = ["source", "what", "paper", "ours", "our run", "difference", "claim", "holds", "CIs overlap"]


def _run_text(cells: Cells, run: Run, task: str) -> str:
    """The run's label, and a warning when its samples of the task were often cut at max_tokens: the
    number is then one of cut-off answers (the truncation table has every run)."""
    label = objective_label(run.objective, run.beta)
    found = cells.get(run, task, TRUNCATED)
    if found is not None and found[0] > TRUNCATED_FLAG_PERCENT:
        return f"{label}; {found[0]:.1f}% of samples cut at max_tokens"
    return label


def paper_vs_reproduction(summary: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    cells = Cells(summary)
    paper = normalise(paper, required=PAPER_COLUMNS, what="paper numbers")
    several = len(cells.models) > 1
    rows = []
    for model in cells.models:
        for p in paper.itertuples(index=False):
            k = None if pd.isna(p.k) else int(p.k)
            digits = DIGITS.get(p.metric, 1)
            run, ours = _resolve(cells, model, p.objective, p.beta, p.task, p.metric, k)
            claims = [c for c in CLAIMS
                      if (c.objective_a, c.task, c.metric, c.k) == (p.objective, p.task, p.metric, k)]
            verdicts = [_verdict(cells, c, model, p.beta) for c in claims]
            row = {"model": model} if several else {}
            row.update({
                "source": p.source,
                "what": _what(p.objective, p.beta, p.task, p.metric, k),
                "paper": f"{p.value:.{digits}f}",
                "ours": MISSING if ours is None else format_ci(*ours, digits=digits),
                "our run": MISSING if run is None else _run_text(cells, run, p.task),
                "difference": MISSING if ours is None else f"{ours[0] - p.value:+.{digits}f}",
                "claim": "; ".join(c.description for c in claims),
                "holds": "; ".join(v[0] for v in verdicts),
                "CIs overlap": "; ".join(v[1] for v in verdicts),
            })
            rows.append(row)
    head = ["model"] if several else []
    return pd.DataFrame(rows, columns=head + COMPARISON_COLUMNS, dtype=object)
