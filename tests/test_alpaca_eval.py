"""AlpacaEval's own judging (`evaluation.alpaca_eval`, gemsft.evaluate.alpaca_judge, the `alpaca_eval`
rule).

- The rule runs offline on the session's default run through alpaca_eval's real code path: its
  PairwiseAnnotator, prompt template, `vllm_local_completions` decoder (the paper config's judge's
  decoder) and regex completion parser, with the pipeline's tiny base model as the judge. The
  judgments mean nothing; the wiring is real. Its win rate reaches results/metrics.csv and the win-rate
  table of the report.
- Our hard and Bradley-Terry win rates (gemsft.score.best_of_n) equal alpaca_eval's win rate
  (`AbsoluteScoringRule.describe_head2head`) on the same comparisons.
- Bad settings and inputs are one-line errors naming the key or record.
"""

from __future__ import annotations

import math
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import copy_project, run_snakemake
from gemsft import files
from gemsft.evaluate import alpaca_judge
from gemsft.score.best_of_n import expected_win_rate

pytest.importorskip("alpaca_eval")

RUNS = ("tiny/ce/beta-na/seed-1234", "tiny/gem/beta-0.7/seed-1234")

# A judge whose verdict is read off the first character it writes (alpaca_eval's regex parser): one
# pattern matches, and each consumes the whole completion, so every completion gives one preference.
JUDGE_PROMPT = "Q: Which answer to \"{instruction}\" is better, (a) {output_1} or (b) {output_2}?\nA:"
JUDGE_CONFIG = """\
tiny_judge:
  prompt_template: "tiny_judge/prompt.txt"
  fn_completions: "vllm_local_completions"
  completions_kwargs:
    model_name: "{model}"
    model_kwargs: {{dtype: float32, enforce_eager: true, kv_cache_memory_bytes: 268435456,
                   enable_chunked_prefill: false, max_num_batched_tokens: 4096, max_model_len: 512}}
    max_new_tokens: 8
    temperature: 0.0
  fn_completion_parser: "regex_parser"
  completion_parser_kwargs:
    outputs_to_match:
      1: '(?s)^\\s*[A-Ma-m0-4].*'
      2: '(?s)^\\s*[^A-Ma-m0-4\\s].*'
  batch_size: 1
"""


# --------------------------------------------------------------------------- our win rates vs theirs


def alpaca_win_rate(preferences) -> float:
    from alpaca_eval.metrics.winrate import get_winrate

    return get_winrate([{"preference": p} for p in preferences])["win_rate"]


def test_our_win_rates_equal_alpaca_evals_on_the_same_comparisons():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=40).round(1)  # rounded: some ties with the references
    references = rng.normal(size=40).round(1)
    assert (rewards == references).any()
    hard = [expected_win_rate([r], ref, 1, hard=True) for r, ref in zip(rewards, references)]
    # alpaca_eval's preference: 1 the reference (output_1) wins, 2 the model wins, 1.5 a tie.
    preferences = [1.0 + 1.0 * (r > ref) + 0.5 * (r == ref) for r, ref in zip(rewards, references)]
    assert 100 * np.mean(hard) == pytest.approx(alpaca_win_rate(preferences), abs=1e-9)
    # Bradley-Terry: a soft preference 1 + P(model better), as alpaca_eval's weighted annotators give.
    soft = [expected_win_rate([r], ref, 1) for r, ref in zip(rewards, references)]
    assert 100 * np.mean(soft) == pytest.approx(alpaca_win_rate([1.0 + p for p in soft]), abs=1e-9)


def test_per_prompt_scores_average_to_alpaca_evals_win_rate():
    preferences = [2.0, 1.0, 1.5, 2.0, float("nan")]
    scores = [alpaca_judge.preference_score(p) for p in preferences]
    assert scores[:4] == [100.0, 0.0, 50.0, 100.0] and math.isnan(scores[4])
    assert np.nanmean(scores) == pytest.approx(alpaca_win_rate(preferences[:4]))


# --------------------------------------------------------------------------- bad input


def test_bad_annotators_config_is_one_line_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"^evaluation.alpaca_eval.annotators_config: 'gpt5_judge' is neither"):
        alpaca_judge.resolve_annotators_config("gpt5_judge")
    with pytest.raises(ValueError, match="evaluation.alpaca_eval.annotators_config: .*missing.yaml is neither"):
        alpaca_judge.resolve_annotators_config(str(tmp_path / "missing.yaml"))
    assert alpaca_judge.resolve_annotators_config("alpaca_eval_vllm_llama3_70b_fn") == "alpaca_eval_vllm_llama3_70b_fn"
    shipped = Path(__file__).resolve().parents[1] / "config/alpaca_eval/llama3_70b_vllm"
    assert alpaca_judge.resolve_annotators_config(str(shipped)) == str(shipped / "configs.yaml")


def test_an_output_without_record_or_reference_is_named():
    records = [{"id": "a", "prompt": "Hi?", "reference": "Hello."}, {"id": "b", "prompt": "Bye?", "reference": ""}]
    outputs = [{"instruction": "Hi?", "output": "Hey.", "generator": "m"}]
    ours, reference, judged = alpaca_judge.outputs_to_judge(records, outputs)  # b was not sampled: not judged
    assert [r["id"] for r in judged] == ["a"] and reference[0]["output"] == "Hello." and ours[0]["output"] == "Hey."
    with pytest.raises(ValueError, match="chat record 'b' has no reference output"):
        alpaca_judge.outputs_to_judge(records, outputs + [{"instruction": "Bye?", "output": "Ciao.", "generator": "m"}])
    with pytest.raises(ValueError, match="exported instruction 'Why\\?' is not among the chat records"):
        alpaca_judge.outputs_to_judge(records, [{"instruction": "Why?", "output": "No.", "generator": "m"}])


# --------------------------------------------------------------------------- the rule, end to end


@pytest.fixture(scope="module")
def judged_project(pipeline_run, tmp_path_factory) -> Path:
    """A copy of the session's default run (outputs with their times, so only the new jobs run), with
    the tiny base model as alpaca_eval's judge, after the alpaca_eval jobs, the tidy table and the
    win-rate table are made."""
    project = copy_project(tmp_path_factory.mktemp("judged"))
    shutil.copytree(pipeline_run / "results", project / "results", symlinks=True)
    judge_dir = project / "config/alpaca_eval/tiny_judge"
    judge_dir.mkdir(parents=True)
    (judge_dir / "prompt.txt").write_text(JUDGE_PROMPT)
    (judge_dir / "configs.yaml").write_text(JUDGE_CONFIG.format(model=project / "results/base/tiny"))
    (project / "config/judge.yaml").write_text(textwrap.dedent("""\
        evaluation:
          alpaca_eval: {annotators_config: config/alpaca_eval/tiny_judge}
        """))
    targets = [f"results/eval/{run}/alpaca_eval.json" for run in RUNS] + ["results/metrics.csv",
                                                                          "results/tables/beta_sweep.csv"]
    run_snakemake(project, *targets, "--profile", "profiles/local", "--cores", "2", "--rerun-triggers", "mtime",
                  "--configfile", "config/ci.yaml", "config/judge.yaml")
    return project


@pytest.mark.slow
def test_the_rule_judges_each_run_through_alpaca_evals_code(judged_project):
    for run in RUNS:
        exported = files.read_json(judged_project / f"results/exports/{run}/alpaca_eval_model_outputs.json")
        stage = files.read_json(judged_project / f"results/eval/{run}/alpaca_eval.json")
        annotations = files.read_json(judged_project / f"results/eval/{run}/alpaca_eval_annotations.json")
        assert stage["stage"] == "alpaca_eval" and stage["annotators_config"].endswith("tiny_judge/configs.yaml")
        # Every exported prompt was judged: by the tiny model through the annotator (its raw completion
        # kept), or, where both outputs are the same text, a tie that alpaca_eval declares itself.
        assert sorted(a["instruction"] for a in annotations) == sorted(e["instruction"] for e in exported)
        assert all(a["annotator"] == "tiny_judge" for a in annotations)
        for a in annotations:
            tie = a["output_1"] == a["output_2"]
            assert a["preference"] == 1.5 if tie else a["preference"] in (1.0, 2.0), a
            assert tie or isinstance(a["preference_raw_completion"], str), a
        assert {a["generator_1"] for a in annotations} == {alpaca_judge.REFERENCE_GENERATOR}
        rows = {r["metric"]: r["value"] for r in stage["rows"]}
        expected = 100 * np.mean([a["preference"] - 1 for a in annotations])
        assert rows[alpaca_judge.WIN_RATE] == pytest.approx(expected)
        assert 0 <= rows[alpaca_judge.STANDARD_ERROR] < 100
        # The world's prompts are not AlpacaEval's: no length-controlled win rate, and the stage says why.
        assert alpaca_judge.LC_WIN_RATE not in rows and stage["length_controlled"] != "computed"
        assert sorted(p["value"] for p in stage["per_prompt"]) == sorted(100.0 * (a["preference"] - 1)
                                                                        for a in annotations)


@pytest.mark.slow
def test_the_win_rate_reaches_the_tidy_table_and_the_report(judged_project):
    metrics = pd.read_csv(judged_project / "results/metrics.csv")
    judged = metrics[metrics["metric"] == alpaca_judge.WIN_RATE]
    # Every fine-tuned run is judged (the base model, which has no reward-model win rate, is not).
    fine_tuned = set(metrics.loc[metrics["metric"] == "win_rate", "objective"])
    assert len(fine_tuned) == 6 and sorted(judged["objective"]) == sorted(fine_tuned)
    table = pd.read_csv(judged_project / "results/tables/beta_sweep.csv")
    assert "AlpacaEval win rate" in table.columns
