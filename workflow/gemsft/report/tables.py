"""The paper's tables, rebuilt from `results/summary.csv`, and the paper-vs-reproduction comparison.

Every builder takes the summary (one row per model x objective x beta x task x metric x k, aggregated
over seeds) and returns a DataFrame of display strings ("12.3 ± 0.4"), so the CSV, Markdown and LaTeX
files show the same cells. A metric a run lacks is an empty cell: the DAG may have skipped a stage.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from gemsft.files import atomic_path
from gemsft.report.labels import NO_BETA, objective_label, run_sort_key
from gemsft.report.summary import SUMMARY_COLUMNS  # noqa: F401 - the summary's columns, re-exported for readers

PAPER_COLUMNS = ("source", "objective", "beta", "task", "metric", "k", "value", "note")
PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.csv")
MISSING = "—"

# Metrics not in the summary that this module derives; the paper reports the mean alignment tax.
DERIVED_METRICS = {"alignment_tax_average"}
TAX_PREFIX = "alignment_tax_"

# Decimals as the paper prints them: entropies to 0.01, percentages to 0.1.
DIGITS = {"entropy": 2, "perplexity": 2, "kl_to_world": 3, "l2_distance_from_base": 2}

# The paper ran GEM with h = log-sigmoid (Appendix B); where we have only the linear GEM, compare with it
# and say so in the "our run" column.
COUNTERPART_FALLBACK = {"gem_log_sigmoid": "gem"}
BETA_OBJECTIVES = ("gem", "gem_log_sigmoid")  # the objectives a claim's beta applies to

TASK_NAMES = {"chat": "chat", "code": "code", "humaneval": "HumanEval", "math": "math",
              "knowledge": "knowledge", "sft_test": "SFT test set", "parameters": "parameters",
              # the leaderboard tasks of the real-data forgetting evaluation
              "arc_challenge": "ARC", "hellaswag": "HellaSwag", "mmlu": "MMLU", "truthfulqa_mc2": "TruthfulQA",
              "winogrande": "WinoGrande", "gsm8k": "GSM8K"}
METRIC_NAMES = {"ngram_diversity": "N-gram diversity", "self_bleu_diversity": "Self-BLEU diversity",
                "sbert_diversity": "Sentence-BERT diversity", "greedy_accuracy": "greedy accuracy",
                "alignment_tax_average": "alignment tax (average)", "entropy": "entropy",
                "perplexity": "perplexity", "coverage": "coverage", "kl_to_world": "KL to world"}


# --------------------------------------------------------------------------- loading and formatting


def _beta_label(beta) -> str:
    """Canonical beta label, as gemsft.config.beta_label writes it ("1.0" and 1.0 become "1")."""
    if beta is None or (isinstance(beta, float) and math.isnan(beta)) or str(beta).strip() in ("", NO_BETA):
        return NO_BETA
    try:
        return f"{float(beta):g}"
    except ValueError:
        return str(beta)


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Column types every builder relies on, whether the frame came from a CSV or was built in memory."""
    df = df.copy()
    k = df["k"] if "k" in df else pd.Series([pd.NA] * len(df), index=df.index)
    df["k"] = pd.to_numeric(k.replace("", pd.NA), errors="coerce").astype("Int64")
    df["beta"] = [_beta_label(b) for b in df["beta"]] if "beta" in df else NO_BETA
    for col in ("value", "ci_low", "ci_high"):
        df[col] = pd.to_numeric(df[col].replace("", pd.NA), errors="coerce").astype(float) if col in df else math.nan
    for col in ("n_prompts", "n_seeds"):
        if col in df:
            df[col] = pd.to_numeric(df[col].replace("", pd.NA), errors="coerce")
    return df


def load_summary(path) -> pd.DataFrame:
    # keep_default_na=False: the beta label "na" and model names must stay strings.
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("model", "objective", "beta", "task", "metric", "value") if c not in df]
    if missing:
        raise ValueError(f"{path}: summary lacks columns {missing}")
    return _normalise(df)


def load_paper(path=PAPER_NUMBERS) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in PAPER_COLUMNS if c not in df]
    if missing:
        raise ValueError(f"{path}: paper numbers lack columns {missing}")
    return _normalise(df)[list(PAPER_COLUMNS)]


def format_ci(value, low, high, digits: int = 1) -> str:
    """"12.3 ± 0.4" with the larger side of the interval as half-width (bootstrap CIs are asymmetric);
    just the value when the interval is unknown, "" when the value is."""
    if value is None or pd.isna(value):
        return ""
    text = f"{value:.{digits}f}"
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return text
    return f"{text} ± {max(value - low, high - value):.{digits}f}"


# --------------------------------------------------------------------------- lookups


class Run(NamedTuple):
    model: str
    objective: str
    beta: str


class _Cells:
    """The summary as a dict keyed (run, task, metric, k), k None where the metric has none."""

    def __init__(self, summary: pd.DataFrame):
        if summary is None or len(summary) == 0:
            raise ValueError("summary has no rows (was results/summary.csv built from any metrics?)")
        df = _normalise(summary)
        self.cells: dict[tuple, tuple[float, float, float]] = {}
        for r in df.itertuples(index=False):
            key = (Run(str(r.model), str(r.objective), r.beta), r.task, r.metric, None if pd.isna(r.k) else int(r.k))
            if key in self.cells:
                raise ValueError(f"summary has two rows for {key}")
            self.cells[key] = (r.value, r.ci_low, r.ci_high)
        self.models = sorted({key[0].model for key in self.cells})

    def get(self, run: Run, task: str, metric: str, k: int | None = None) -> tuple[float, float, float] | None:
        if metric == "alignment_tax_average":
            return self._tax_average(run)
        return self.cells.get((run, task, metric, k))

    def _tax_average(self, run: Run):
        """The mean alignment tax over every forgetting task and metric of the run (the paper's average
        over the leaderboard tasks). A mean of bootstrap intervals is not an interval of the mean, so
        the average has none."""
        values = [v[0] for (r, _, m, _), v in self.cells.items()
                  if r == run and m.startswith(TAX_PREFIX) and not pd.isna(v[0])]
        return (sum(values) / len(values), math.nan, math.nan) if values else None

    def forgetting_metrics(self) -> list[tuple[str, str]]:
        """(task, metric) of every forgetting score that has an alignment tax."""
        return sorted({(t, m[len(TAX_PREFIX):]) for (_, t, m, _) in self.cells if m.startswith(TAX_PREFIX)},
                      key=lambda tm: (tm[0], tm[1] not in ("acc", "acc_norm"), tm[1]))

    def runs(self, tasks, objectives=None) -> list[Run]:
        found = {key[0] for key in self.cells if key[1] in tasks}
        if objectives is not None:
            found = {r for r in found if r.objective in objectives}
        return sorted(found, key=lambda r: (r.model, run_sort_key(r.objective, r.beta)))

    def ks(self, task: str, metric: str, runs=None) -> list[int]:
        return sorted({key[3] for key in self.cells if key[1] == task and key[2] == metric
                       and key[3] is not None and (runs is None or key[0] in runs)})

    def has(self, task: str, metric: str) -> bool:
        return any(key[1] == task and key[2] == metric for key in self.cells)


class Column(NamedTuple):
    title: str
    task: str
    metric: str
    k: int | None = None


def _cell(cells: _Cells, run: Run, col: Column) -> str:
    found = cells.get(run, col.task, col.metric, col.k)
    return "" if found is None else format_ci(*found, digits=DIGITS.get(col.metric, 1))


def _frame(cells: _Cells, runs: list[Run], columns: list[Column]) -> pd.DataFrame:
    """One row per run, one string cell per column; a model column only when the summary has several."""
    several = len(cells.models) > 1
    rows = []
    for run in runs:
        row = {"model": run.model} if several else {}
        row["run"] = objective_label(run.objective, run.beta)
        row.update({col.title: _cell(cells, run, col) for col in columns})
        rows.append(row)
    head = (["model"] if several else []) + ["run"]
    return pd.DataFrame(rows, columns=head + [c.title for c in columns], dtype=object)


# --------------------------------------------------------------------------- the tables


def table2_diversity(summary: pd.DataFrame) -> pd.DataFrame:
    cells = _Cells(summary)
    columns = [Column("N-gram", "chat", "ngram_diversity"), Column("Self-BLEU", "chat", "self_bleu_diversity"),
               Column("Sentence-BERT", "chat", "sbert_diversity")]
    # Only the embedded world knows its true distribution, so these exist only there.
    columns += [c for c in (Column("Coverage", "chat", "coverage"), Column("KL to world", "chat", "kl_to_world"))
                if cells.has(c.task, c.metric)]
    return _frame(cells, cells.runs({"chat"}), columns)


def table3_beta_sweep(summary: pd.DataFrame) -> pd.DataFrame:
    cells = _Cells(summary)
    runs = cells.runs({"chat"}, objectives={"ce", "gem", "gem_log_sigmoid"})
    columns = [Column("single sample", "chat", "win_rate", 1)]
    largest = max(cells.ks("chat", "win_rate", runs), default=None)
    if largest is not None and largest > 1:
        columns.append(Column(f"BoN@{largest}", "chat", "win_rate", largest))
    return _frame(cells, runs, columns)


def table4_math(summary: pd.DataFrame) -> pd.DataFrame:
    cells = _Cells(summary)
    columns = [Column("greedy", "math", "greedy_accuracy")]
    for title, metric in (("majority", "majority_accuracy"), ("pass", "pass_rate")):
        k = max(cells.ks("math", metric), default=None)
        columns.append(Column(title if k is None else f"{title}@{k}", "math", metric, k))
    return _frame(cells, cells.runs({"math"}), columns)


def entropy_table(summary: pd.DataFrame) -> pd.DataFrame:
    cells = _Cells(summary)
    columns = [Column("entropy", "sft_test", "entropy"), Column("perplexity", "sft_test", "perplexity")]
    return _frame(cells, cells.runs({"sft_test"}), columns)


def alignment_tax_table(summary: pd.DataFrame) -> pd.DataFrame:
    cells = _Cells(summary)
    scores = cells.forgetting_metrics()
    runs = [r for r in cells.runs({task for task, _ in scores}) if r.objective != "base"]
    # One task (the world's probes): columns by metric; several (the leaderboard): by task.
    several = len({task for task, _ in scores}) > 1
    label = {(t, m): TASK_NAMES.get(t, t) if several else m for t, m in scores}
    columns = [Column(label[t, m], t, m) for t, m in scores if cells.has(t, m)]
    columns += [Column(f"tax ({label[t, m]})", t, f"{TAX_PREFIX}{m}") for t, m in scores]
    columns.append(Column("tax (average)", "knowledge", "alignment_tax_average"))
    return _frame(cells, runs, columns)


def code_table(summary: pd.DataFrame) -> pd.DataFrame:
    cells = _Cells(summary)
    columns = [Column(f"{TASK_NAMES[task]} pass@{k}", task, "pass_at_k", k)
               for task in ("code", "humaneval") for k in (1, 10, 100) if k in cells.ks(task, "pass_at_k")]
    return _frame(cells, cells.runs({"code", "humaneval"}), columns)


# --------------------------------------------------------------------------- paper vs reproduction


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
    Claim("GEM has a lower alignment tax than CE", _GEM, "ce", "knowledge", "alignment_tax_average", None, "<"),
]


def _resolve(cells: _Cells, model: str, objective: str, beta: str, task: str, metric: str, k):
    """Our run and value for a paper number: the same objective and beta, else its fallback objective."""
    for obj in (objective, COUNTERPART_FALLBACK.get(objective)):
        if obj is None:
            continue
        run = Run(model, obj, beta)
        found = cells.get(run, task, metric, k)
        if found is not None and not pd.isna(found[0]):
            return run, found
    return None, None


def _verdict(cells: _Cells, claim: Claim, model: str, beta: str) -> tuple[str, str]:
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
    cells = _Cells(summary)
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


def paper_vs_reproduction(summary: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    cells = _Cells(summary)
    paper = _normalise(paper)
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
                "our run": MISSING if run is None else objective_label(run.objective, run.beta),
                "difference": MISSING if ours is None else f"{ours[0] - p.value:+.{digits}f}",
                "claim": "; ".join(c.description for c in claims),
                "holds": "; ".join(v[0] for v in verdicts),
                "CIs overlap": "; ".join(v[1] for v in verdicts),
            })
            rows.append(row)
    head = ["model"] if several else []
    return pd.DataFrame(rows, columns=head + COMPARISON_COLUMNS, dtype=object)


# --------------------------------------------------------------------------- writing


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  # pdflatex without extra packages cannot typeset these Unicode characters.
                  "±": r"$\pm$", "β": r"$\beta$", "—": "---"}
_LATEX_SPECIAL = re.compile("|".join(re.escape(c) for c in _LATEX_ESCAPES))


def _latex_text(text) -> str:
    return _LATEX_SPECIAL.sub(lambda m: _LATEX_ESCAPES[m.group()], str(text))


def _to_latex(df: pd.DataFrame, name: str, caption: str) -> str:
    styler = df.style.hide(axis="index").format(_latex_text).format_index(_latex_text, axis=1)
    return styler.to_latex(caption=_latex_text(caption), label=f"tab:{name}", hrules=True,
                           position_float="centering")


def write_table(df: pd.DataFrame, out_dir, name: str, caption: str) -> list[Path]:
    """Write name.csv, name.md and name.tex; all three appear together or none does."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex")]
    with contextlib.ExitStack() as stack:
        # Entered in order, renamed in reverse only after all three are written.
        csv_tmp, md_tmp, tex_tmp = (stack.enter_context(atomic_path(p)) for p in paths)
        df.to_csv(csv_tmp, index=False)
        md_tmp.write_text(f"{caption}\n\n{df.to_markdown(index=False, disable_numparse=True)}\n", encoding="utf-8")
        tex_tmp.write_text(_to_latex(df, name, caption), encoding="utf-8")
    return paths


TABLES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "diversity": table2_diversity,
    "beta_sweep": table3_beta_sweep,
    "math": table4_math,
    "entropy": entropy_table,
    "alignment_tax": alignment_tax_table,
    "code": code_table,
}

_CI = "Mean over seeds ± the larger side of the 95% bootstrap interval"
CAPTIONS = {
    "diversity": f"Output diversity on chat, 0-100, higher is more diverse (cf. paper Table 2); KL in nats. {_CI}.",
    "beta_sweep": "Chat win rate against the reference: one sample and best-of-N, CE and GEM across beta "
                  f"(cf. paper Table 3). {_CI}.",
    "math": f"Math: greedy accuracy, majority voting and pass rate over the samples (cf. paper Table 4). {_CI}.",
    "entropy": f"Mean next-token entropy (nats) and perplexity on the SFT test set (cf. paper Section 6.1). {_CI}.",
    "alignment_tax": "Knowledge accuracy and alignment tax (base minus tuned, points; cf. paper Section 6.2, "
                     f"Figure 8). {_CI}; the average has no interval.",
    "code": f"Code pass@k, world tasks and HumanEval (cf. paper Figure 7b). {_CI}.",
    "paper_vs_reproduction": "The paper's numbers beside ours (Llama-3.1-8B there, the embedded world here), "
                             "and whether the paper's qualitative claims hold on our runs.",
}


TABLE_NAMES = (*TABLES, "paper_vs_reproduction")


def build_table(name: str, summary: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    if name == "paper_vs_reproduction":
        return paper_vs_reproduction(summary, paper)
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; expected one of {', '.join(TABLE_NAMES)}")
    return TABLES[name](summary)


def build_all(summary: pd.DataFrame, paper: pd.DataFrame, out_dir) -> list[Path]:
    written = []
    for name in TABLE_NAMES:
        written += write_table(build_table(name, summary, paper), out_dir, name, CAPTIONS[name])
    return written
