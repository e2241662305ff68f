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
        assert diversity == {"ngram_diversity", "self_bleu_diversity", "sbert_diversity", "ead_diversity",
                             "vendi_score", "truncated"}
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


# Last in the module: it re-evaluates the run above under compat, and the tests before it read the
# default mode's outputs.
def test_compat_paper_code_rescores_the_same_samples_as_the_official_scripts(real_run, nltk_with_punkt_tab):
    """The compat switch through the rules: the same samples are rescored (none redrawn), diversity
    from the official chat-template strings of the base model's template (compat_tokenizer: null),
    math by the official extraction and voting, both equal to the references of the official code."""
    import official_diversity_reference as official_diversity
    import official_math_reference as official_math
    import yaml

    from gemsft.chat_format import load_tokenizer

    run = RUNS[1]
    chat_samples = (real_run / f"results/samples/{run}/chat.jsonl").read_bytes()
    # The tiny model never answers a GSM8K question, so its math samples become answers written as
    # real models write them, from each question's own solution: the compat scorer then has
    # something to extract, round and vote on.
    records = {r["id"]: r for r in files.read_jsonl(real_run / "results/data/eval_math.jsonl")}
    position = {pid: i for i, pid in enumerate(records)}
    for task in ("math", "math_greedy"):
        path = real_run / f"results/samples/{run}/{task}.jsonl"
        rows = files.read_jsonl(path)
        files.write_jsonl(path, [dict(row, text=real_style_answer(records[row["prompt_id"]],
                                                                  position[row["prompt_id"]] + row["sample_index"]))
                                 for row in rows])
    (real_run / "compat.yaml").write_text("evaluation: {compat: paper_code}\n")
    run_snakemake(real_run, "--profile", "profiles/local", "--cores", "2", "--configfile", "config/real-small.yaml",
                  "compat.yaml", "--config", f"data_mirror={MIRROR}")
    assert (real_run / f"results/samples/{run}/chat.jsonl").read_bytes() == chat_samples  # rescored, not redrawn

    diversity = files.read_json(real_run / f"results/eval/{run}/diversity.json")
    model = {**yaml.safe_load((real_run / "config/config.yaml").read_text())["model"], **config(real_run).get("model", {})}
    tokenizer = load_tokenizer(path=str(real_run / "results/base/tiny"), chat_template_from=model.get("chat_template_from"))
    texts = {}
    for row in files.read_jsonl(real_run / f"results/samples/{run}/chat.jsonl"):
        texts.setdefault(row["prompt_id"], []).append(row["text"])
    chat = files.read_jsonl(real_run / "results/data/eval_chat.jsonl")
    response_set = official_diversity.diversity_response_set(
        tokenizer, tokenizer, [{"prompt": official_diversity.saved_prompt(tokenizer, r["prompt"]),
                                "answer": texts[r["id"]]} for r in chat])
    per_prompt = {}
    for row in diversity["per_prompt"]:
        per_prompt.setdefault(row["metric"], []).append(row["value"])
    assert len(per_prompt["ngram_diversity"]) == len(chat)
    assert sum(per_prompt["ngram_diversity"]) / len(chat) == pytest.approx(
        100 * official_diversity.averaged_ngram_diversity(response_set), abs=1e-9)
    assert sum(per_prompt["self_bleu_diversity"]) / len(chat) == pytest.approx(
        100 - official_diversity.self_bleu(response_set), abs=1e-9)

    math_stage = files.read_json(real_run / f"results/eval/{run}/math.json")
    records = list(records.values())
    greedy = {r["prompt_id"]: r["text"] for r in files.read_jsonl(real_run / f"results/samples/{run}/math_greedy.jsonl")}
    drawn = {}
    for row in sorted(files.read_jsonl(real_run / f"results/samples/{run}/math.jsonl"), key=lambda r: r["sample_index"]):
        drawn.setdefault(row["prompt_id"], []).append(row["text"])
    _, accuracy, _ = official_math.official_greedy_accuracy([greedy[r["id"]] for r in records],
                                                            [r["reference"] for r in records])
    rows = {row["metric"]: row["value"] for row in math_stage["rows"]}
    assert 0 < accuracy < 1 and rows["greedy_accuracy"] == pytest.approx(100 * accuracy, abs=1e-9)
    assert not any(name.endswith("_fallback") for name in rows)
    majority = [official_math.official_voting(official_math.official_label(r["reference"]),
                                              [official_math.official_extract_in_loop(t) for t in drawn[r["id"]]],
                                              depths=[len(drawn[r["id"]])])[0][-1] for r in records]
    assert rows["majority_accuracy"] == pytest.approx(100 * sum(majority) / len(records), abs=1e-9)


def real_style_answer(record: dict, index: int) -> str:
    """One of five ways a model ends a GSM8K answer, chosen by `index`: the solution with the
    paper's marker, bold, a wrong number, no number, and a boxed answer the official code misreads."""
    gold = record["reference"].split("####")[-1].strip()
    forms = (record["reference"].replace("####", "The answer is:"), f"The answer is: **{gold}**",
             f"The answer is: {gold}1", "The answer is: I am not sure.", f"So the answer is $\\boxed{{{gold}}}$.")
    return forms[index % len(forms)]
