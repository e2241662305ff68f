"""The share of samples cut at max_tokens, from the stage rows through the summary to the report: the
truncation table per run and task, its flag over 5%, and the note in the paper-vs-reproduction
table beside a number computed from often-cut samples."""

from __future__ import annotations

import pandas as pd
import pytest

from gemsft.evaluate.math_accuracy import evaluate_math
from gemsft.evaluate.stage import TRUNCATED, mean_rows, truncation_rows
from gemsft.report import claims, tables
from gemsft.report.registry import TABLE_CAPTIONS, TRUNCATED_FLAG_PERCENT
from gemsft.report.summary import SUMMARY_COLUMNS, summarize

RECORDS = [{"id": f"q{i}", "answer": i} for i in range(4)]


def samples(prompt_ids, n, cut_per_prompt):
    """n sample rows per prompt, the first `cut_per_prompt` of them ran to max_tokens."""
    return [{"prompt_id": pid, "sample_index": j, "text": f"The answer is: {j}",
             "finish_reason": "length" if j < cut_per_prompt else "stop"} for pid in prompt_ids for j in range(n)]


def stages(objective, beta, chat_cut, math_cut):
    """A run's math stage (evaluate_math: 16 samples and a greedy answer per question) and the chat
    rows of its diversity stage (32 samples per prompt)."""
    run = {"model": "tiny", "objective": objective, "beta": beta, "seed": 1}
    ids = [r["id"] for r in RECORDS]
    math_rows, math_per_prompt = evaluate_math(RECORDS, samples(ids, 1, 0), samples(ids, 16, math_cut))
    chat = truncation_rows("chat", ids, samples(ids, 32, chat_cut))
    return [{"stage": "math", "run": run, "rows": math_rows, "per_prompt": math_per_prompt},
            {"stage": "diversity", "run": run, "rows": mean_rows(chat), "per_prompt": chat}]


@pytest.fixture(scope="module")
def summary():
    # CE: 1 of 17 math samples cut per question (5.9%, over the line); GEM: 1 of 32 chat samples (3.1%).
    rows = summarize([*stages("ce", "na", 0, 1), *stages("gem", "0.7", 1, 0)], n_resamples=200)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def test_truncated_share_reaches_the_summary(summary):
    cut = summary[summary.metric == TRUNCATED].set_index(["objective", "task"]).value
    assert cut[("ce", "math")] == pytest.approx(100 / 17) and cut[("ce", "chat")] == 0.0
    assert cut[("gem", "chat")] == pytest.approx(100 / 32) and cut[("gem", "math")] == 0.0


def test_truncation_table_flags_runs_over_the_threshold(summary):
    table = tables.truncation_table(summary)
    assert list(table.columns) == ["run", "chat", "math", "flag"]
    assert table.run.tolist() == ["CE", "GEM (β=0.7)"]
    ce, gem = table.to_dict("records")
    assert ce["math"].startswith("5.9 ± ") and ce["chat"] == "0.0 ± 0.0"
    assert ce["flag"] == f"over {TRUNCATED_FLAG_PERCENT:g}%: math" and gem["flag"] == ""
    assert gem["chat"].startswith("3.1")
    assert "flagged" in TABLE_CAPTIONS["truncation"]
    # Through the same dispatch the table rule uses.
    pd.testing.assert_frame_equal(tables.build_table("truncation", summary, claims.load_paper()), table)


def test_comparison_notes_numbers_from_often_cut_samples(summary):
    df = claims.paper_vs_reproduction(summary, claims.load_paper())
    ce_math = df[df.what == "CE: math majority@16"].iloc[0]
    assert ce_math["our run"] == "CE; 5.9% of samples cut at max_tokens"
    # GEM's chat samples are cut less often than the threshold: its run is named plainly.
    gem_math = df[df.what == "GEM (log-sigmoid, β=0.7): math majority@16"].iloc[0]
    assert gem_math["our run"] == "GEM (β=0.7)"
