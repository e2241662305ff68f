"""The paper's tables, rebuilt from `results/summary.csv`.

Every builder takes the summary (one row per model x objective x beta x task x metric x k, aggregated
over seeds) and returns a DataFrame of display strings (`gemsft.report.cells`). Names and captions are
in `gemsft.report.registry`; the paper-vs-reproduction table and the claims' scoreboard are
`gemsft.report.claims`, and both read the claims' verdicts (results/claims.csv; the scoreboard reads
nothing else). The data table reads no summary either: it is `gemsft.report.data_table`, built from
the data directory and the runs' training metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from gemsft.config import BASE_OBJECTIVE
from gemsft.evaluate import alpaca_judge
from gemsft.evaluate.stage import TRUNCATED
from gemsft.report import reward_accuracy
from gemsft.report.alignment_tax import AVERAGE as TAX_AVERAGE, tax_metric
from gemsft.report.cells import Cells, Column, table_frame
from gemsft.report.claims import claims_table, paper_vs_reproduction
from gemsft.report.labels import TASK_NAMES
from gemsft.report.registry import TABLE_CAPTIONS as CAPTIONS, TABLE_NAMES, TRUNCATED_FLAG_PERCENT
from gemsft.report.table_files import write_table


def table2_diversity(summary: pd.DataFrame) -> pd.DataFrame:
    cells = Cells(summary)
    columns = [Column("N-gram", "chat", "ngram_diversity"), Column("Self-BLEU", "chat", "self_bleu_diversity"),
               Column("Sentence-BERT", "chat", "sbert_diversity")]
    # Only the embedded world knows its true distribution, so these exist only there.
    columns += [c for c in (Column("Coverage", "chat", "coverage"), Column("KL to world", "chat", "kl_to_world"))
                if cells.has(c.task, c.metric)]
    return table_frame(cells, cells.runs({"chat"}), columns)


def table3_beta_sweep(summary: pd.DataFrame) -> pd.DataFrame:
    cells = Cells(summary)
    runs = cells.runs({"chat"}, objectives={"ce", "gem", "gem_log_sigmoid"})
    columns = [Column("single sample", "chat", "win_rate", 1)]
    largest = max(cells.ks("chat", "win_rate", runs), default=None)
    oracle = [Column("oracle: single sample", "chat", "oracle_win_rate", 1)]
    if largest is not None and largest > 1:
        columns.append(Column(f"BoN@{largest}", "chat", "win_rate", largest))
        oracle += [Column(f"oracle: BoN@{largest}", "chat", "oracle_win_rate", largest),
                   Column(f"oracle: RM's BoN@{largest}", "chat", "rm_selected_oracle_win_rate", largest)]
    # Only the embedded world has an oracle; the held-out accuracy of a trained reward model says how
    # far its best-of-N (the columns before) can be trusted.
    oracle.append(Column(reward_accuracy.TITLE, reward_accuracy.TASK, reward_accuracy.METRIC))
    # AlpacaEval's own judge, where evaluation.alpaca_eval ran it (its LC win rate where it could fit it).
    judged = [Column("AlpacaEval win rate", "chat", alpaca_judge.WIN_RATE),
              Column("AlpacaEval LC win rate", "chat", alpaca_judge.LC_WIN_RATE)]
    return table_frame(cells, runs, columns + [c for c in oracle + judged if cells.has(c.task, c.metric)])


def table4_math(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 4. "greedy" is over all questions (the paper's number); "greedy (answered)",
    where measured, over the questions whose greedy response gave an answer (the official script's
    other denominator)."""
    cells = Cells(summary)
    columns = [Column("greedy", "math", "greedy_accuracy")]
    if cells.has("math", "greedy_accuracy_valid"):
        columns.append(Column("greedy (answered)", "math", "greedy_accuracy_valid"))
    for title, metric in (("majority", "majority_accuracy"), ("pass", "pass_rate")):
        k = max(cells.ks("math", metric), default=None)
        columns.append(Column(title if k is None else f"{title}@{k}", "math", metric, k))
    return table_frame(cells, cells.runs({"math"}), columns)


def entropy_table(summary: pd.DataFrame) -> pd.DataFrame:
    cells = Cells(summary)
    columns = [Column("entropy", "sft_test", "entropy"), Column("perplexity", "sft_test", "perplexity")]
    return table_frame(cells, cells.runs({"sft_test"}), columns)


def alignment_tax_table(summary: pd.DataFrame) -> pd.DataFrame:
    cells = Cells(summary)
    scores = cells.forgetting_metrics()
    runs = [r for r in cells.runs({task for task, _ in scores}) if r.objective != BASE_OBJECTIVE]
    # One task (the world's probes): columns by metric; several (the leaderboard): by task.
    several = len({task for task, _ in scores}) > 1
    label = {(t, m): TASK_NAMES.get(t, t) if several else m for t, m in scores}
    columns = [Column(label[t, m], t, m) for t, m in scores if cells.has(t, m)]
    columns += [Column(f"tax ({label[t, m]})", t, tax_metric(m)) for t, m in scores]
    columns.append(Column("tax (average)", "knowledge", TAX_AVERAGE))
    return table_frame(cells, runs, columns)


def code_table(summary: pd.DataFrame) -> pd.DataFrame:
    cells = Cells(summary)
    columns = [Column(f"{TASK_NAMES[task]} pass@{k}", task, "pass_at_k", k)
               for task in ("code", "humaneval") for k in (1, 10, 100) if k in cells.ks(task, "pass_at_k")]
    return table_frame(cells, cells.runs({"code", "humaneval"}), columns)


SAMPLED_TASKS = ("chat", "code", "humaneval", "math")
FLAG = "flag"


def truncation_flag(cells: Cells, run, tasks) -> str:
    """The tasks whose samples the run cut at max_tokens more often than the threshold (mean over
    seeds), e.g. "over 5%: chat, math"; "" when none."""
    over = [TASK_NAMES.get(t, t) for t in tasks
            if (found := cells.get(run, t, TRUNCATED)) is not None and found[0] > TRUNCATED_FLAG_PERCENT]
    return f"over {TRUNCATED_FLAG_PERCENT:g}%: {', '.join(over)}" if over else ""


def truncation_table(summary: pd.DataFrame) -> pd.DataFrame:
    cells = Cells(summary)
    tasks = [t for t in SAMPLED_TASKS if cells.has(t, TRUNCATED)]
    runs = cells.runs(set(tasks))
    frame = table_frame(cells, runs, [Column(TASK_NAMES[t], t, TRUNCATED) for t in tasks])
    frame[FLAG] = [truncation_flag(cells, run, tasks) for run in runs]
    return frame


# The tables read from the summary alone; the comparison also reads the paper's numbers and the
# claims' verdicts, the scoreboard (SCOREBOARD) only the verdicts, and the data table (DATA) neither.
TABLES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "diversity": table2_diversity,
    "beta_sweep": table3_beta_sweep,
    "math": table4_math,
    "entropy": entropy_table,
    "alignment_tax": alignment_tax_table,
    "code": code_table,
    "truncation": truncation_table,
}
COMPARISON = "paper_vs_reproduction"
SCOREBOARD = "claims"
DATA = "data"
SUMMARY_TABLES = tuple(name for name in TABLE_NAMES if name != DATA)


def build_table(name: str, summary: pd.DataFrame | None, paper: pd.DataFrame | None,
                claims: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table `name`; `claims` (results/claims.csv) is needed by the scoreboard, which reads nothing else,
    and shown by the comparison."""
    if name == SCOREBOARD:
        if claims is None:
            raise ValueError(f"the {SCOREBOARD!r} table is built from results/claims.csv; none was given")
        return claims_table(claims)
    if name == COMPARISON:
        return paper_vs_reproduction(summary, paper, claims)
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; expected one of {', '.join(SUMMARY_TABLES)} "
                         f"(the {DATA!r} table is gemsft.report.data_table's)")
    return TABLES[name](summary)


def build_all(summary: pd.DataFrame, paper: pd.DataFrame, out_dir, claims: pd.DataFrame | None = None) -> list[Path]:
    """Every table built from the summary (all but the data table), and the scoreboard when `claims`
    is given."""
    written = []
    for name in SUMMARY_TABLES:
        if name == SCOREBOARD and claims is None:
            continue
        written += write_table(build_table(name, summary, paper, claims), out_dir, name, CAPTIONS[name])
    return written
