"""The real-data configuration end to end: config/real-small.yaml runs the whole DAG on the local
mirror's UltraFeedback, AlpacaEval, GSM8K, HumanEval and leaderboard files with the tiny model, so every
real-data path (loaders, chat-template SFT with truncation, reward model on UltraFeedback pairs, the
six leaderboard tasks, tables without the world's extras) executes on every change."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from conftest import MIRROR, copy_project, run_snakemake
from gemsft import files
from gemsft.data.leaderboard import LEADERBOARD_TASKS
from gemsft.evaluate.leaderboard import task_label
from gemsft.evaluate.stage import mean_rows

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no data mirror at {MIRROR}")]

RUNS = ("tiny/base/beta-na/seed-0", "tiny/ce/beta-na/seed-1234", "tiny/gem/beta-0.7/seed-1234")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("real_small"))
    run_snakemake(project, "--profile", "profiles/local", "--cores", "2", "--configfile", "config/real-small.yaml",
                  "--config", f"data_mirror={MIRROR}")
    return project


def config(project):
    import yaml

    return yaml.safe_load((project / "config/real-small.yaml").read_text())


def test_data_stage_reads_the_configured_mirror_subsets(real_run):
    summary = files.read_json(real_run / "results/data/world.json")
    real = config(real_run)["data"]["real"]
    assert summary["source"] == "real" and summary["mirror"] is True
    assert summary["counts"] == {"pretrain": real["pretrain"]["limit"], "sft_train": real["sft"]["limit"],
                                 "sft_test": real["sft"]["test_limit"], "eval_chat": real["chat"]["limit"],
                                 "eval_math": real["math"]["limit"], "preferences": real["preferences"]["limit"]}
    # The chat prompts are AlpacaEval's first instructions with GPT-4 Turbo's outputs as the reference.
    alpaca = json.loads((MIRROR / "alpaca_eval/gpt4_1106_preview_model_outputs.json").read_text())
    chat = files.read_jsonl(real_run / "results/data/eval_chat.jsonl")
    assert [(r["prompt"], r["reference"]) for r in chat] == [(a["instruction"], a["output"])
                                                             for a in alpaca[:len(chat)]]
    # SFT on UltraFeedback conversations, truncated to train.max_length (the mirror's answers are long).
    metrics = files.read_json(real_run / f"results/sft/{RUNS[1]}/train_metrics.json")
    assert metrics["rows"] == real["sft"]["limit"] and 0 < metrics["examples"] <= metrics["rows"]
    assert metrics["supervised_tokens"] <= metrics["examples"] * config(real_run)["train"]["max_length"]


def test_every_stage_is_written_for_every_run_without_world_only_metrics(real_run):
    eval_dir = real_run / "results/eval"
    for run in RUNS:
        stages = {p.stem for p in (eval_dir / run).glob("*.json")} - {"lm_eval_results"}
        expected = {"diversity", "knowledge", "model_stats"}
        if "base" not in run:
            expected |= {"chat_quality", "humaneval", "math"}
        assert stages == expected, run
        assert not (eval_dir / run / "code.json").exists()  # the world's code tasks are off
        diversity = {row["metric"] for row in files.read_json(eval_dir / run / "diversity.json")["rows"]}
        # No coverage / KL (world-only); the share of samples cut at max_tokens is there for every task.
        assert diversity == {"ngram_diversity", "self_bleu_diversity", "sbert_diversity", "truncated"}
    chat_quality = files.read_json(eval_dir / RUNS[1] / "chat_quality.json")
    assert {(r["metric"], r["k"]) for r in chat_quality["rows"]} >= {("win_rate", 32), ("bon_reward", 1)}
    math_stage = files.read_json(eval_dir / RUNS[2] / "math.json")
    assert {r["prompt_id"] for r in math_stage["per_prompt"]} == {f"gsm8k/{i}" for i in range(4)}


def test_forgetting_runs_the_six_leaderboard_tasks_and_the_stage_rows_are_their_scores(real_run):
    for run in RUNS:
        saved = files.read_json(real_run / f"results/eval/{run}/lm_eval_results.json")
        assert {task: saved["n-shot"][task] for task in LEADERBOARD_TASKS} == {
            task: shots for task, (shots, _) in LEADERBOARD_TASKS.items()}
        stage = files.read_json(real_run / f"results/eval/{run}/knowledge.json")
        rows = {(r["task"], r["metric"]): r["value"] for r in stage["rows"]}
        assert set(rows) == {(task_label(t), m.partition(",")[0]) for t, (_, m) in LEADERBOARD_TASKS.items()}
        # lm-eval's aggregates equal the per-document rows' means (MMLU: the unweighted subject mean).
        for row in mean_rows(stage["per_prompt"]):
            assert row["value"] == pytest.approx(rows[row["task"], row["metric"]], abs=1e-9), row
            expected = saved["results"][f"gemsft_{row['task']}"]
            key = next(k for k in expected if k.startswith(row["metric"] + ",") and "stderr" not in k
                       and (row["task"] != "gsm8k" or k.endswith("strict-match")))
            assert row["value"] == pytest.approx(100 * expected[key], abs=1e-9)


def test_field_formats_are_exported(real_run):
    run = RUNS[1]
    outputs = files.read_json(real_run / f"results/exports/{run}/alpaca_eval_model_outputs.json")
    chat = files.read_jsonl(real_run / "results/data/eval_chat.jsonl")
    assert [o["instruction"] for o in outputs] == [r["prompt"] for r in chat]
    assert all(set(o) == {"instruction", "output", "generator", "dataset"} for o in outputs)
    assert {o["dataset"] for o in outputs} <= {r["dataset"] for r in chat}
    samples = files.read_jsonl(real_run / f"results/exports/{run}/humaneval_samples.jsonl")
    assert len(samples) == 20 and {s["task_id"] for s in samples} == {"HumanEval/0"}


def test_tables_and_figures_of_the_real_run(real_run):
    tax = pd.read_csv(real_run / "results/tables/alignment_tax.csv")
    assert list(tax["run"]) == ["CE", "GEM (β=0.7)"]
    for name in ("ARC", "HellaSwag", "MMLU", "TruthfulQA", "WinoGrande", "GSM8K"):
        assert f"tax ({name})" in tax.columns
    summary = pd.read_csv(real_run / "results/summary.csv")
    ce_tax = summary[(summary.objective == "ce") & summary.metric.str.startswith("alignment_tax_")]
    assert set(ce_tax.task) == {task_label(t) for t in LEADERBOARD_TASKS}
    assert math.isclose(tax["tax (average)"][0], ce_tax.value.mean(), abs_tol=0.051)  # the table rounds to 0.1
    figures = {p.name for p in (real_run / "figures").glob("*.png")}
    assert "fig8_knowledge.png" in figures and "fig11_next_token.png" not in figures
