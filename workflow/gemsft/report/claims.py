"""The paper beside the reproduction: the paper's numbers (paper_numbers.csv), its qualitative claims
(CLAIMS), and two tables of their verdicts: the claims scoreboard and paper_vs_reproduction.

The verdicts themselves are `results/claims.csv` (CLAIMS_COLUMNS), judged by a paired bootstrap on the
evaluation stages' per-item values (`gemsft.report.verdicts`); this module only reads it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from gemsft.evaluate.stage import TRUNCATED
from gemsft.report import reward_accuracy
from gemsft.report.alignment_tax import AVERAGE as TAX_AVERAGE, taxed_metric
from gemsft.report.cells import DIGITS, MISSING, Cells, Run, format_ci
from gemsft.report.labels import METRIC_NAMES, TASK_NAMES, objective_label
from gemsft.report.registry import TRUNCATED_FLAG_PERCENT
from gemsft.report.summary_reader import normalise, read_csv

PAPER_COLUMNS = ("source", "objective", "beta", "task", "metric", "k", "value", "note")
PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.csv")

# The paper ran GEM with h = log-sigmoid (Appendix B); where we have only the linear GEM, compare with it
# and say so (the "our run" column, the claims' arm_a and reason).
COUNTERPART_FALLBACK = {"gem_log_sigmoid": "gem"}
BETA_OBJECTIVES = ("gem", "gem_log_sigmoid")  # the objectives a claim's beta applies to


def load_paper(path=PAPER_NUMBERS) -> pd.DataFrame:
    return read_csv(path, required=PAPER_COLUMNS)[list(PAPER_COLUMNS)]


class Claim(NamedTuple):
    """The paper's qualitative claim that objective_a's metric is `direction` ('>' or '<') objective_b's
    (GEM at PAPER_BETA). `task`/`metric`/`k` are the paper's own benchmark, the one its number in
    paper_numbers.csv is of and the one real data (data.source "real") judges it on; `world` is the
    (task, metric) the embedded world judges it on where that differs. The alignment-tax claim is
    judged on the forgetting tasks of report.knowledge_tasks instead."""
    id: str
    description: str
    objective_a: str
    objective_b: str
    task: str
    metric: str
    k: int | None
    direction: str
    world: tuple[str, str] | None = None

    def target(self, source: str) -> tuple[str, str]:
        """(task, metric) the claim is judged on with data source `source`."""
        return self.world if source == "world" and self.world else (self.task, self.metric)


_GEM = "gem_log_sigmoid"
PAPER_BETA = "0.7"  # Section 6 set-up: "We implement GEM with beta = 0.7"
_DIVERSITY = {"ngram": "ngram_diversity", "self_bleu": "self_bleu_diversity", "sbert": "sbert_diversity"}
CLAIMS = [
    Claim("entropy", "GEM has higher entropy than CE", _GEM, "ce", "sft_test", "entropy", None, ">"),
    # The world's chat answers have a known true quality (the oracle); its reward model's win rate
    # would judge GEM by the same proxy best-of-N picked with.
    Claim("bon32_win_rate", "GEM has a higher BoN@32 win rate than CE", _GEM, "ce", "chat", "win_rate", 32, ">",
          world=("chat", "oracle_win_rate")),
    Claim("pass_at_100", "GEM has higher pass@100 than CE", _GEM, "ce", "humaneval", "pass_at_k", 100, ">",
          world=("code", "pass_at_k")),  # the world's own code family
    *[Claim(f"diversity_{short}", f"GEM is more diverse than CE ({METRIC_NAMES[m]})", _GEM, "ce", "chat", m, None,
            ">") for short, m in _DIVERSITY.items()],
    *[Claim(f"ce_vs_base_{short}", f"CE is less diverse than the pre-trained model ({METRIC_NAMES[m]})", "ce",
            "base", "chat", m, None, "<") for short, m in _DIVERSITY.items()],
    Claim("math_greedy", "GEM beats CE in greedy accuracy", _GEM, "ce", "math", "greedy_accuracy", None, ">"),
    Claim("math_majority", "GEM beats CE in majority voting", _GEM, "ce", "math", "majority_accuracy", 16, ">"),
    Claim("math_pass", "GEM beats CE in pass rate", _GEM, "ce", "math", "pass_rate", 16, ">"),
    Claim("alignment_tax", "GEM has a lower alignment tax than CE", _GEM, "ce", "knowledge", TAX_AVERAGE, None, "<"),
]
CLAIM_IDS = tuple(c.id for c in CLAIMS)

# --------------------------------------------------------------------------- results/claims.csv

CLAIMS_COLUMNS = ("id", "model", "claim", "task", "metric", "k", "arm_a", "arm_b", "direction", "value_a", "value_b",
                  "difference", "ci_low", "ci_high", "n_items", "n_seeds", "verdict", "reason")
SUPPORTED, CONTRADICTED, INCONCLUSIVE, UNTESTABLE = VERDICTS = (
    "supported", "contradicted", "inconclusive", "untestable")
_CLAIM_NUMBERS = ("k", "value_a", "value_b", "difference", "ci_low", "ci_high", "n_items", "n_seeds")
TASK_SEPARATOR = "+"  # the alignment tax over several forgetting tasks names them all in its task column


def normalise_claims(frame: pd.DataFrame, what: str = "claims") -> pd.DataFrame:
    """A copy with numbers as floats (NaN where empty) and text as text; ValueError naming the missing
    columns, or the row with a verdict that is not one of VERDICTS or a direction not '>'/'<'."""
    missing = [c for c in CLAIMS_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}")
    df = frame[list(CLAIMS_COLUMNS)].copy()
    for column in _CLAIM_NUMBERS:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    for column in (c for c in CLAIMS_COLUMNS if c not in _CLAIM_NUMBERS):
        df[column] = ["" if pd.isna(x) else str(x) for x in df[column]]
    for i, (cid, verdict, direction) in enumerate(zip(df["id"], df["verdict"], df["direction"])):
        if verdict not in VERDICTS:
            raise ValueError(f"{what} row {i + 1} ({cid}): verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
        if direction not in (">", "<"):
            raise ValueError(f"{what} row {i + 1} ({cid}): direction {direction!r} is not '>' or '<'")
    return df


def load_claims(path: str | os.PathLike) -> pd.DataFrame:
    # keep_default_na=False: an empty reason stays "", a model named "na" stays a name.
    return normalise_claims(pd.read_csv(path, dtype=str, keep_default_na=False), what=str(path))


# --------------------------------------------------------------------------- display


def metric_text(task: str, metric: str, k) -> str:
    """"chat win rate, BoN@32", "HumanEval pass@100", "knowledge alignment tax (acc)"."""
    k = None if k is None or (isinstance(k, float) and math.isnan(k)) else int(k)
    tasks = ", ".join(TASK_NAMES.get(t, t) for t in task.split(TASK_SEPARATOR))
    if metric.endswith("win_rate"):
        name = metric.replace("_", " ")
        name = f"{name}, single sample" if k == 1 else f"{name}, BoN@{k}"
    elif metric in ("pass_at_k", "pass_rate"):
        name = f"pass@{k}"
    elif metric == "majority_accuracy":
        name = f"majority@{k}"
    elif taxed_metric(metric) is not None:
        name = f"alignment tax ({taxed_metric(metric)})"
    else:
        name = METRIC_NAMES.get(metric, metric) + ("" if k is None else f" (k={k})")
    return f"{tasks} {name}"


def _what(objective: str, beta: str, task: str, metric: str, k) -> str:
    return f"{objective_label(objective, beta)}: {metric_text(task, metric, k)}"


def _digits(metric: str) -> int:
    return DIGITS.get(metric, 1)


def format_difference(difference, low, high, digits: int = 1) -> str:
    """"+3.1 [+1.2, +5.0]": the difference and its interval, signed; MISSING when there is none."""
    if pd.isna(difference):
        return MISSING
    text = f"{difference:+.{digits}f}"
    if pd.isna(low) or pd.isna(high):
        return text
    return f"{text} [{low:+.{digits}f}, {high:+.{digits}f}]"


def _ordered(claims: pd.DataFrame) -> pd.DataFrame:
    """Rows by model, then in CLAIMS order (unknown ids after, by id)."""
    rank = {cid: i for i, cid in enumerate(CLAIM_IDS)}
    keys = [(m, rank.get(cid, len(rank)), cid) for m, cid in zip(claims["model"], claims["id"])]
    return claims.iloc[sorted(range(len(claims)), key=keys.__getitem__)]


SCOREBOARD_COLUMNS = ["claim", "tested on", "difference A − B (95% CI)", "verdict", "reason"]


def claims_table(claims: pd.DataFrame) -> pd.DataFrame:
    """The scoreboard: one row per claim (and model), what it was tested on as "A − B", the
    difference with its interval, the verdict and why."""
    df = _ordered(normalise_claims(claims))
    if len(df) == 0:
        raise ValueError("claims have no rows (was results/claims.csv built from any stage?)")
    several = df["model"].nunique() > 1
    rows = []
    for r in df.itertuples(index=False):
        row = {"model": r.model} if several else {}
        row.update({"claim": r.claim, "tested on": f"{metric_text(r.task, r.metric, r.k)}: {r.arm_a} − {r.arm_b}",
                    SCOREBOARD_COLUMNS[2]: format_difference(r.difference, r.ci_low, r.ci_high, _digits(r.metric)),
                    "verdict": r.verdict, "reason": r.reason})
        rows.append(row)
    head = ["model"] if several else []
    return pd.DataFrame(rows, columns=head + SCOREBOARD_COLUMNS, dtype=object)


# --------------------------------------------------------------------------- paper vs reproduction


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


VERDICT_COLUMN, CLAIM_DIFFERENCE = "verdict", "claim difference (95% CI)"
COMPARISON_COLUMNS = ["source", "what", "paper", "ours", "our run", "difference", "claim", VERDICT_COLUMN,
                      CLAIM_DIFFERENCE]


def _run_text(cells: Cells, run: Run, task: str) -> str:
    """The run's label, and a warning when its samples of the task were often cut at max_tokens: the
    number is then one of cut-off answers (the truncation table has every run)."""
    label = objective_label(run.objective, run.beta)
    found = cells.get(run, task, TRUNCATED)
    if found is not None and found[0] > TRUNCATED_FLAG_PERCENT:
        return f"{label}; {found[0]:.1f}% of samples cut at max_tokens"
    return label


def _reward_accuracy_text(cells: Cells, run: Run | None, task: str, metric: str) -> str:
    """The held-out accuracy of the reward model behind a number it scored (chat win rate, best-of-N
    reward); "" beside any other number."""
    if run is None or task != reward_accuracy.TASK or metric not in reward_accuracy.SCORED_BY_REWARD_MODEL:
        return ""
    found = cells.get(run, reward_accuracy.TASK, reward_accuracy.METRIC)
    return MISSING if found is None else format_ci(*found)


def _paper_claims(objective: str, beta: str, task: str, metric: str, k) -> list[Claim]:
    """The claims about this paper number: of its objective, benchmark and k, GEM's at the paper's beta."""
    return [c for c in CLAIMS if (c.objective_a, c.task, c.metric, c.k) == (objective, task, metric, k)
            and (objective not in BETA_OBJECTIVES or beta == PAPER_BETA)]


def _claim_cells(verdicts: dict, model: str, claims: list[Claim], task: str, metric: str) -> tuple[str, str]:
    """(verdict, "A − B: difference [interval]") of each claim, joined by "; "; MISSING where
    claims.csv has no row. A claim judged on another task or metric than the paper number's (the
    world's own code task, its oracle win rate) names it."""
    texts = []
    for c in claims:
        r = verdicts.get((model, c.id))
        if r is None:
            texts.append((MISSING, MISSING))
            continue
        difference = format_difference(r["difference"], r["ci_low"], r["ci_high"], _digits(r["metric"]))
        if difference != MISSING:
            where = "" if (r["task"], r["metric"]) == (task, metric) else f"{metric_text(r['task'], r['metric'], r['k'])}, "
            difference = f"{where}{r['arm_a']} − {r['arm_b']}: {difference}"
        texts.append((r["verdict"], difference))
    return "; ".join(t[0] for t in texts), "; ".join(t[1] for t in texts)


def paper_vs_reproduction(summary: pd.DataFrame, paper: pd.DataFrame, claims: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every paper number beside ours (from the summary), with the verdict of the claims about it (from
    claims.csv; MISSING without it). With a reward model trained by the DAG, its held-out accuracy
    stands beside every number it scored (column reward_accuracy.TITLE, after "our run")."""
    cells = Cells(summary)
    with_accuracy = cells.has(reward_accuracy.TASK, reward_accuracy.METRIC)
    paper = normalise(paper, required=PAPER_COLUMNS, what="paper numbers")
    verdicts = {} if claims is None else {(r["model"], r["id"]): r
                                          for r in normalise_claims(claims).to_dict("records")}
    several = len(cells.models) > 1
    rows = []
    for model in cells.models:
        for p in paper.itertuples(index=False):
            k = None if pd.isna(p.k) else int(p.k)
            digits = _digits(p.metric)
            run, ours = _resolve(cells, model, p.objective, p.beta, p.task, p.metric, k)
            about = _paper_claims(p.objective, p.beta, p.task, p.metric, k)
            verdict, difference = _claim_cells(verdicts, model, about, p.task, p.metric)
            row = {"model": model} if several else {}
            row.update({
                "source": p.source,
                "what": _what(p.objective, p.beta, p.task, p.metric, k),
                "paper": f"{p.value:.{digits}f}",
                "ours": MISSING if ours is None else format_ci(*ours, digits=digits),
                "our run": MISSING if run is None else _run_text(cells, run, p.task),
                "difference": MISSING if ours is None else f"{ours[0] - p.value:+.{digits}f}",
                "claim": "; ".join(c.description for c in about),
                VERDICT_COLUMN: verdict,
                CLAIM_DIFFERENCE: difference,
            })
            if with_accuracy:
                row[reward_accuracy.TITLE] = _reward_accuracy_text(cells, run, p.task, p.metric)
            rows.append(row)
    head = ["model"] if several else []
    columns = list(COMPARISON_COLUMNS)
    if with_accuracy:
        columns.insert(columns.index("our run") + 1, reward_accuracy.TITLE)
    return pd.DataFrame(rows, columns=head + columns, dtype=object)

