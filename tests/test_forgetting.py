"""Forgetting through lm-evaluation-harness: the local world-knowledge task, lm-eval's scores checked
against an independent transformers computation (per-document log-likelihoods and accuracy), BOS
conditioning, the results file, bad inputs, and the alignment-tax arithmetic."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from gemsft import files
from gemsft.evaluate.forgetting import WORLD_KNOWLEDGE_TASK, WORLD_KNOWLEDGE_TEMPLATE, document_rows, evaluate_tasks, primary_scores, write_world_knowledge_task
from gemsft.pretrain.model import tiny_llama
from gemsft.evaluate.stage import mean_rows
from gemsft.pretrain.tokenizer import train_tokenizer

BASE_DIR = "results/base/tiny"  # in the pipeline run (tests/conftest.py)
KNOWLEDGE = "results/data/eval_knowledge.jsonl"

COUNTRIES = ["Quinthoia", "Zorquinia", "Ashdraia", "Koashia", "Velmora", "Trandel"]
CAPITALS = ["Vorek", "Shio", "Silek", "Pralun", "Falshi", "Calnir"]
MODEL_CFG = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 1,
             "max_position_embeddings": 128}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def toy_rows() -> list[dict]:
    rows = []
    for i, country in enumerate(COUNTRIES):
        choices = [CAPITALS[(i + k) % len(CAPITALS)] for k in range(4)]
        rows.append({"id": f"toy/{i}", "relation": "capital", "question": f"What is the capital of {country}?",
                     "choices": choices, "gold": i % 4})
    return rows


@pytest.fixture(scope="module")
def toy_model_dir(tmp_path_factory):
    """A random tiny model with the project's tokenizer (BOS, chat template); weights scaled up so the
    choices get clearly different log-likelihoods."""
    corpus = [f"Q: What is the capital of {c}?\nA: {k}." for c, k in zip(COUNTRIES, CAPITALS)] * 10
    tokenizer = train_tokenizer(corpus, vocab_size=300)
    torch.manual_seed(0)
    model = tiny_llama(MODEL_CFG, tokenizer)
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0.0, 1.0)
    path = tmp_path_factory.mktemp("toy_model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@torch.no_grad()
def reference_loglikelihoods(model_dir: Path, rows: list[dict], bos: bool = True) -> list[list[float]]:
    """Sum of float64 log-probabilities of each continuation " {choice}." given "Q: {question}\\nA:",
    one unpadded sequence at a time. The continuation's tokens are those of the whole text after the
    context's tokens (the text is tokenized once, as in pretraining)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    prefix = [tokenizer.bos_token_id] if bos else []
    out = []
    for row in rows:
        context = f"Q: {row['question']}\nA:"
        context_ids = prefix + tokenizer.encode(context, add_special_tokens=False)
        lls = []
        for choice in row["choices"]:
            whole = prefix + tokenizer.encode(context + f" {choice}.", add_special_tokens=False)
            assert whole[: len(context_ids)] == context_ids  # the split point is a token boundary
            log_p = model(torch.tensor([whole])).logits[0].double().log_softmax(-1)
            lls.append(sum(float(log_p[t - 1, whole[t]]) for t in range(len(context_ids), len(whole))))
        out.append(lls)
    return out


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def reference_accuracy(rows: list[dict], lls: list[list[float]]) -> tuple[float, float]:
    acc = sum(argmax(ll) == row["gold"] for row, ll in zip(rows, lls)) / len(rows)
    # acc_norm: log-likelihood divided by the continuation's length in characters (lm-eval's definition)
    acc_norm = sum(argmax([l / len(f" {c}.") for l, c in zip(ll, row["choices"])]) == row["gold"]
                   for row, ll in zip(rows, lls)) / len(rows)
    return acc, acc_norm


def binomial_tail(k: int, n: int, p: float) -> float:
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


# --------------------------------------------------------------------------- the task YAML


def test_task_yaml_names_the_data_and_includes_the_packaged_config(tmp_path):
    data = tmp_path / "probes.jsonl"
    files.write_jsonl(data, toy_rows())
    assert write_world_knowledge_task(data, tmp_path / "tasks") == WORLD_KNOWLEDGE_TASK == "gemsft_world_knowledge"
    written = yaml.safe_load((tmp_path / "tasks" / "gemsft_world_knowledge.yaml").read_text())
    assert written["task"] == WORLD_KNOWLEDGE_TASK and written["dataset_path"] == "json"
    assert written["dataset_kwargs"] == {"data_files": {"test": str(data.resolve())}}
    assert written["test_split"] == "test" and Path(written["include"]) == WORLD_KNOWLEDGE_TEMPLATE
    assert [p.name for p in (tmp_path / "tasks").iterdir()] == ["gemsft_world_knowledge.yaml"]  # no temp left

    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(tmp_path / "tasks" / "gemsft_world_knowledge.yaml")  # as lm-eval resolves it
    assert config["output_type"] == "multiple_choice" and config["num_fewshot"] == 0
    assert config["doc_to_text"] == "Q: {{question}}\nA:" and config["doc_to_target"] == "gold"
    assert config["target_delimiter"] == ""
    assert config["doc_to_choice"](toy_rows()[0]) == [" Vorek.", " Shio.", " Silek.", " Pralun."]
    assert [m["metric"] for m in config["metric_list"]] == ["acc", "acc_norm"]


@pytest.mark.parametrize("row, message", [
    ({"question": "q?", "choices": ["a", "b"], "gold": 2}, "row 1 has 'gold'=2"),
    ({"question": "q?", "choices": ["a", "b"], "gold": True}, "row 1 has 'gold'=True"),
    ({"question": "q?", "choices": "ab", "gold": 0}, "row 1 needs 'choices'"),
    ({"choices": ["a", "b"], "gold": 0}, "row 1 has no string field 'question'"),
])
def test_bad_probe_rows_name_the_row(tmp_path, row, message):
    data = tmp_path / "probes.jsonl"
    files.write_jsonl(data, [toy_rows()[0], row])
    with pytest.raises(ValueError, match=message):
        write_world_knowledge_task(data, tmp_path / "tasks")
    with pytest.raises(FileNotFoundError, match="not found"):
        write_world_knowledge_task(tmp_path / "missing.jsonl", tmp_path / "tasks")


# --------------------------------------------------------------------------- lm-eval vs the reference


def run_and_check(model_dir: Path, data: Path, tmp_path: Path) -> tuple[dict, list[dict], list[list[float]]]:
    rows = files.read_jsonl(data)
    task = write_world_knowledge_task(data, tmp_path / "tasks")
    out_json, samples = tmp_path / "lm_eval.json", tmp_path / "samples.jsonl"
    scores = evaluate_tasks(model_dir, [task], tmp_path / "tasks", out_json, batch_size=16,
                            samples_jsonl=samples)

    saved = files.read_json(out_json)
    assert {"results", "configs", "versions", "n-shot"} <= set(saved)
    assert saved["n-shot"][task] == 0 and saved["results"][task]["acc,none"] == scores[task]["acc"]
    assert saved["gemsft"]["model_args"]["add_bos_token"] is True
    assert set(scores[task]) >= {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"}
    assert scores[task]["n"] == len(rows)

    # lm-eval's per-document log-likelihoods equal the independent float64 computation (which
    # conditions on BOS), the same documents in the same order; accuracy is then the same number.
    by_doc = sorted((r for r in files.read_jsonl(samples) if r["task"] == task), key=lambda r: r["doc_id"])
    assert [r["doc"] for r in by_doc] == rows
    harness = [[resp[0] for resp in r["filtered_resps"]] for r in by_doc]
    reference = reference_loglikelihoods(model_dir, rows)
    for got, want in zip(harness, reference):
        assert got == pytest.approx(want, rel=1e-6, abs=5e-5)  # float32 vs float64: base model <= 3e-6
    acc, acc_norm = reference_accuracy(rows, reference)
    assert scores[task]["acc"] == acc and scores[task]["acc_norm"] == acc_norm
    assert [r["acc"] for r in by_doc] == [float(argmax(ll) == row["gold"]) for ll, row in zip(reference, rows)]
    # Per-document rows (for bootstrap intervals) average back to lm-eval's scores.
    aggregate = {r["metric"]: r for r in mean_rows(document_rows(samples, task, "knowledge"))}
    assert aggregate["acc"]["value"] == pytest.approx(100 * scores[task]["acc"], rel=1e-12)
    assert aggregate["acc_norm"]["value"] == pytest.approx(100 * scores[task]["acc_norm"], rel=1e-12)
    assert aggregate["acc"]["n_prompts"] == len(rows)
    with pytest.raises(ValueError, match="no documents of task 'other'"):
        document_rows(samples, "other", "knowledge")
    # The check can tell: without BOS the log-likelihoods are different.
    no_bos = reference_loglikelihoods(model_dir, rows[:2], bos=False)
    assert any(abs(a - b) > 1e-2 for got, want in zip(harness, no_bos) for a, b in zip(got, want))
    return scores[task], rows, reference


def test_lm_eval_matches_reference_on_a_toy_model(toy_model_dir, tmp_path):
    data = tmp_path / "probes.jsonl"
    files.write_jsonl(data, toy_rows())
    run_and_check(toy_model_dir, data, tmp_path)


@pytest.mark.slow
def test_base_model_knows_the_world_far_above_chance(tmp_path, pipeline_run):
    """Measured on the default base model (60 probes, 4 choices): acc 23/60 = 0.383, acc_norm 27/60 =
    0.45. Both clearly beat chance (0.25) but acc does not reach 0.5: the 4-layer, 1M-parameter model
    saw each fact about 16 times in 7 phrasings. Bound: an exact one-sided binomial test against
    chance at the 5% level (acc needs >= 22/60 = 0.367, p = 0.030; 23/60 gives p = 0.015)."""
    scores, rows, reference = run_and_check(pipeline_run / BASE_DIR, pipeline_run / KNOWLEDGE, tmp_path)
    n = len(rows)
    correct, correct_norm = round(scores["acc"] * n), round(scores["acc_norm"] * n)
    print(f"\nworld knowledge, base model: acc {scores['acc']:.4f} ({correct}/{n}), "
          f"acc_norm {scores['acc_norm']:.4f} ({correct_norm}/{n})")
    assert binomial_tail(correct, n, 0.25) < 0.05
    assert binomial_tail(correct_norm, n, 0.25) < 0.05


# --------------------------------------------------------------------------- bad inputs


def test_invalid_model_dir_is_a_clear_error(tmp_path, toy_model_dir):
    task_dir = tmp_path / "tasks"
    data = tmp_path / "probes.jsonl"
    files.write_jsonl(data, toy_rows())
    task = write_world_knowledge_task(data, task_dir)
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        evaluate_tasks(tmp_path / "nope", [task], task_dir, tmp_path / "out.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        evaluate_tasks(tmp_path / "empty", [task], task_dir, tmp_path / "out.json")
    (tmp_path / "empty" / "config.json").write_text((toy_model_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no model weights"):
        evaluate_tasks(tmp_path / "empty", [task], task_dir, tmp_path / "out.json")
    with pytest.raises(ValueError, match="unknown lm-eval task.*no_such_task"):
        evaluate_tasks(toy_model_dir, ["no_such_task"], task_dir, tmp_path / "out.json", include_defaults=False)
    assert not (tmp_path / "out.json").exists()


# --------------------------------------------------------------------------- alignment tax


def test_primary_scores_pick_one_metric_per_task():
    tidy = {"arc": {"acc": 0.5, "acc_norm": 0.6}, "mmlu": {"acc": 0.7}}
    assert primary_scores(tidy) == {"arc": 0.5, "mmlu": 0.7}
    assert primary_scores(tidy, {"arc": "acc_norm", "mmlu": "acc"}) == {"arc": 0.6, "mmlu": 0.7}
    with pytest.raises(KeyError, match="no metric 'mc2'"):
        primary_scores(tidy, "mc2")
