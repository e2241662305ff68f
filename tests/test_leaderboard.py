"""The six Open LLM Leaderboard v1 tasks (gemsft.data.leaderboard): the data mirror converted into the hub's
schemas (counts from shared/data/SOURCES.md and a known row per file), the written task YAMLs (shot
counts, few-shot splits, hub ids and revisions), and one real lm-eval run of all six tasks on a tiny
random model, whose logged prompts hold exactly the leaderboard's number of few-shot examples, each from
the right split."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from gemsft import files
from gemsft.evaluate.forgetting import evaluate_tasks, primary_scores
from gemsft.data.leaderboard import (ARC, GSM8K, HELLASWAG, HUB_DATASETS, LEADERBOARD_TASKS, MMLU, MMLU_SUBJECTS,
                                     TASKS_DIR, TRUTHFULQA, WINOGRANDE, mmlu_task, primary_metrics,
                                     write_leaderboard_tasks)
from gemsft.data.leaderboard_mirror import (MIRROR_FILES, hellaswag_partition, read_arc, read_gsm8k_hub,
                                            read_hellaswag, read_mmlu, read_truthfulqa_mc, read_winogrande)
from gemsft.evaluate.leaderboard import score_rows
from gemsft.evaluate.leaderboard import document_rows as leaderboard_document_rows
from gemsft.evaluate.stage import mean_rows

from conftest import MIRROR  # noqa: E402
LIMIT = 3  # scored documents per task (per MMLU subject) in the real run

pytestmark = pytest.mark.skipif(not (MIRROR / "SOURCES.md").is_file(), reason=f"no data mirror at {MIRROR}")


def lm_eval_utils():
    """The task helpers as lm-eval loads them (`!function utils....` next to the base configs)."""
    spec = importlib.util.spec_from_file_location("leaderboard_utils", TASKS_DIR / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- mirror -> hub schema


def test_arc_rows_equal_the_source():
    source = files.read_jsonl(MIRROR / "arc_challenge/ARC-Challenge-Test.jsonl")
    docs = read_arc(MIRROR / "arc_challenge/ARC-Challenge-Test.jsonl")
    assert len(docs) == len(source) == 1172
    assert len(read_arc(MIRROR / "arc_challenge/ARC-Challenge-Train.jsonl")) == 1119
    for doc, row in zip(docs, source):
        assert doc == {"id": row["id"], "question": row["question"]["stem"],
                       "choices": {"text": [c["text"] for c in row["question"]["choices"]],
                                   "label": [c["label"] for c in row["question"]["choices"]]},
                       "answerKey": row["answerKey"]}
    first = docs[0]
    assert first["id"] == "Mercury_7175875" and first["answerKey"] == "C"
    assert first["question"].startswith("An astronomer observes that a planet rotates faster")
    assert first["choices"]["text"][0] == "Planetary density will decrease."
    assert first["choices"]["label"] == list("ABCD")
    assert any(doc["answerKey"].isdigit() for doc in docs)  # numeric keys kept, as on the hub


def test_hellaswag_rows_equal_the_source_and_the_fewshot_pool_is_held_out():
    import bz2

    lines = bz2.open(MIRROR / "hellaswag/hellaswag_val_full.txt.bz2", "rt", encoding="utf-8").read().split("\n")
    docs = read_hellaswag(MIRROR / "hellaswag/hellaswag_val_full.txt.bz2")
    assert len(docs) == 10042
    for i, doc in enumerate(docs):
        assert lines[6 * i] == f"{doc['activity_label']}: {doc['ctx']}"
        assert doc["ctx"] == doc["ctx_a"] + (f" {doc['ctx_b']}" if doc["ctx_b"] else "")
        assert doc["label"] == lines[6 * i + 1] and doc["endings"] == lines[6 * i + 2:6 * i + 6]
    assert [sum(d["label"] == str(k) for d in docs) for k in range(4)] == [2515, 2485, 2584, 2458]
    first = docs[0]
    assert (first["activity_label"], first["ctx_a"], first["ctx_b"], first["label"]) == \
        ("Roof shingle removal", "A man is sitting on a roof.", "he", "3")
    assert first["endings"][3] == "starts pulling up roofing on a roof."
    # lm-eval's process_docs gives the hub's query (ctx_b capitalised).
    processed = lm_eval_utils()._hellaswag_doc(first)
    assert processed["query"] == "Roof shingle removal: A man is sitting on a roof. He" and processed["gold"] == 3

    scored, pool = hellaswag_partition(docs)
    assert (len(scored), len(pool)) == (9540, 502)
    assert scored[0] == first and pool[0] == docs[19]
    assert sorted(map(json.dumps, scored + pool)) == sorted(map(json.dumps, docs))


def test_mmlu_rows_equal_the_source():
    n_test = n_dev = 0
    for subject in MMLU_SUBJECTS:
        for split in ("test", "dev"):
            path = MIRROR / f"mmlu/{split}/{subject}_{split}.csv"
            with open(path, encoding="utf-8", newline="") as f:
                rows = list(csv.reader(f))
            docs = read_mmlu(path, subject)
            assert docs == [{"question": r[0], "subject": subject, "choices": r[1:5], "answer": "ABCD".index(r[5])}
                            for r in rows]
            n_test += len(docs) if split == "test" else 0
            n_dev += len(docs) if split == "dev" else 0
    assert (n_test, n_dev) == (14042, 285)
    first = read_mmlu(MIRROR / "mmlu/test/abstract_algebra_test.csv", "abstract_algebra")[0]
    assert first == {"question": "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.",
                     "subject": "abstract_algebra", "choices": ["0", "4", "2", "6"], "answer": 1}


def test_truthfulqa_rows_equal_the_source():
    source = files.read_json(MIRROR / "truthfulqa/v0/mc_task.json")
    docs = read_truthfulqa_mc(MIRROR / "truthfulqa/v0/mc_task.json")
    assert len(docs) == len(source) == 817
    for doc, item in zip(docs, source):
        assert doc["question"] == item["question"]
        for field in ("mc1_targets", "mc2_targets"):
            assert dict(zip(doc[field]["choices"], doc[field]["labels"])) == item[field]
            assert doc[field]["choices"] == list(item[field])  # the JSON's order
        assert doc["mc1_targets"]["labels"].count(1) == 1
    smallest = next(d for d in docs if d["question"].startswith("What is the smallest country in the world that is at"))
    assert smallest["mc1_targets"]["choices"][0].startswith("Nauru is the smallest country")
    assert smallest["mc1_targets"]["labels"][0] == 1


def test_winogrande_rows_equal_the_source():
    source = files.read_jsonl(MIRROR / "winogrande/dev.jsonl")
    docs = read_winogrande(MIRROR / "winogrande/dev.jsonl")
    assert len(docs) == len(source) == 1267
    assert docs == [{k: row[k] for k in ("sentence", "option1", "option2", "answer")} for row in source]
    labels = (MIRROR / "winogrande/dev-labels.lst").read_text().split()
    assert [d["answer"] for d in docs] == labels
    assert docs[0] == {"sentence": "Sarah was a much better surgeon than Maria so _ always got the easier cases.",
                       "option1": "Sarah", "option2": "Maria", "answer": "2"}
    assert len(read_winogrande(MIRROR / "winogrande/train_xs.jsonl")) == 160


def test_gsm8k_rows_equal_the_source():
    source = files.read_jsonl(MIRROR / "gsm8k/test.jsonl")
    docs = read_gsm8k_hub(MIRROR / "gsm8k/test.jsonl")
    assert len(docs) == len(source) == 1319
    assert docs == [{"question": r["question"], "answer": r["answer"]} for r in source]
    assert docs[0]["question"].startswith("Janet’s ducks lay 16 eggs per day.")
    assert docs[0]["answer"].endswith("#### 18")
    assert len(read_gsm8k_hub(MIRROR / "gsm8k/train.jsonl")) == 7473


# --------------------------------------------------------------------------- the task YAMLs


def resolved(path: Path) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path)  # include and !function resolved, as lm-eval does


def test_mirror_yamls_have_the_leaderboard_shots_and_the_converted_files(tmp_path):
    assert write_leaderboard_tasks(tmp_path, MIRROR) == list(LEADERBOARD_TASKS)
    assert primary_metrics() == {ARC: "acc_norm", HELLASWAG: "acc_norm", MMLU: "acc", TRUTHFULQA: "mc2",
                                 WINOGRANDE: "acc", GSM8K: "exact_match,strict-match"}
    expected = {ARC: {"test": 1172, "train": 1119, "validation": 299}, HELLASWAG: {"validation": 9540, "fewshot": 502},
                TRUTHFULQA: {"validation": 817}, WINOGRANDE: {"validation": 1267, "train_xs": 160},
                GSM8K: {"test": 1319, "train": 7473}}
    fewshot_split = {ARC: "train", HELLASWAG: "fewshot", WINOGRANDE: "train_xs", GSM8K: "train", TRUTHFULQA: None}
    for task, counts in expected.items():
        config = resolved(tmp_path / f"{task}.yaml")
        assert config["task"] == task and config["num_fewshot"] == LEADERBOARD_TASKS[task][0]
        assert config["dataset_path"] == "json" and config.get("fewshot_split") == fewshot_split[task]
        data_files = config["dataset_kwargs"]["data_files"]
        assert {split: len(files.read_jsonl(path)) for split, path in data_files.items()} == counts
        assert all(Path(p).is_relative_to(tmp_path.resolve() / "data") for p in data_files.values())
    assert resolved(tmp_path / f"{GSM8K}.yaml")["output_type"] == "generate_until"

    group = yaml.safe_load((tmp_path / f"{MMLU}.yaml").read_text())
    assert group["task"] == [mmlu_task(s) for s in MMLU_SUBJECTS] and len(group["task"]) == 57
    assert group["aggregate_metric_list"] == [{"metric": "acc", "aggregation": "mean", "weight_by_size": False}]
    n_test = 0
    for subject in MMLU_SUBJECTS:
        config = resolved(tmp_path / "mmlu" / f"{mmlu_task(subject)}.yaml")
        assert config["num_fewshot"] == 5 and config["fewshot_split"] == "dev"
        assert config["fewshot_config"] == {"sampler": "first_n"}
        assert config["description"] == f"The following are multiple choice questions (with answers) about " \
                                         f"{subject.replace('_', ' ')}.\n\n"
        data_files = config["dataset_kwargs"]["data_files"]
        assert len(files.read_jsonl(data_files["dev"])) == 5
        n_test += len(files.read_jsonl(data_files["test"]))
    assert n_test == 14042
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary files left


def test_limit_cuts_only_the_scored_splits(tmp_path):
    write_leaderboard_tasks(tmp_path, MIRROR, limit=2)
    data = tmp_path / "data"
    counts = {p.relative_to(data).as_posix(): len(files.read_jsonl(p)) for p in data.rglob("*.jsonl")}
    assert counts["arc_challenge/test.jsonl"] == 2 and counts["arc_challenge/train.jsonl"] == 1119
    assert counts["hellaswag/validation.jsonl"] == 2 and counts["hellaswag/fewshot.jsonl"] == 502
    assert counts["truthfulqa_mc/validation.jsonl"] == 2
    assert counts["winogrande/validation.jsonl"] == 2 and counts["winogrande/train_xs.jsonl"] == 160
    assert counts["gsm8k/test.jsonl"] == 2 and counts["gsm8k/train.jsonl"] == 7473
    assert all(counts[f"mmlu/{s}/test.jsonl"] == 2 and counts[f"mmlu/{s}/dev.jsonl"] == 5 for s in MMLU_SUBJECTS)


def test_hub_yamls_name_the_hub_dataset_and_a_revision(tmp_path):
    write_leaderboard_tasks(tmp_path, None)
    assert not (tmp_path / "data").exists()
    hub_names = {ARC: ("allenai/ai2_arc", "ARC-Challenge"), HELLASWAG: ("Rowan/hellaswag", None),
                 TRUTHFULQA: ("truthfulqa/truthful_qa", "multiple_choice"),
                 WINOGRANDE: ("allenai/winogrande", "winogrande_xl"), GSM8K: ("openai/gsm8k", "main")}
    fewshot_split = {ARC: "train", HELLASWAG: "train", WINOGRANDE: "train", GSM8K: "train", TRUTHFULQA: None}
    for task, (path, name) in hub_names.items():
        config = resolved(tmp_path / f"{task}.yaml")
        assert (config["dataset_path"], config.get("dataset_name")) == (path, name)
        assert re.fullmatch(r"[0-9a-f]{40}", config["dataset_kwargs"]["revision"])
        assert config["dataset_kwargs"] == {"revision": HUB_DATASETS[task][2]}
        assert config.get("fewshot_split") == fewshot_split[task]
        assert config["num_fewshot"] == LEADERBOARD_TASKS[task][0]
    for subject in MMLU_SUBJECTS:
        config = resolved(tmp_path / "mmlu" / f"{mmlu_task(subject)}.yaml")
        assert (config["dataset_path"], config["dataset_name"]) == ("cais/mmlu", subject)
        assert config["dataset_kwargs"] == {"revision": HUB_DATASETS[MMLU][2]} and config["num_fewshot"] == 5


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="limit must be an integer >= 1 or None, got 0"):
        write_leaderboard_tasks(tmp_path, MIRROR, limit=0)
    with pytest.raises(ValueError, match="pass limit to gemsft.evaluate.forgetting.evaluate_tasks"):
        write_leaderboard_tasks(tmp_path, None, limit=3)
    with pytest.raises(FileNotFoundError, match="data mirror directory not found"):
        write_leaderboard_tasks(tmp_path, tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="data mirror file not found"):
        write_leaderboard_tasks(tmp_path, tmp_path)  # a directory without the mirror's files


def test_a_failure_midway_leaves_the_previous_directory_and_no_partial_one(tmp_path):
    """The directory is renamed into place whole: a mirror whose ARC files convert but whose HellaSwag
    file is missing writes ARC's data first, then fails; the earlier task directory stays as it was and
    nothing half-written is left beside it. A complete write then names the files at their final place."""
    mirror = tmp_path / "mirror"
    (mirror / "arc_challenge").mkdir(parents=True)
    for relative in MIRROR_FILES["arc"].values():
        (mirror / relative).symlink_to(MIRROR / relative)
    out = tmp_path / "out" / "tasks"
    out.mkdir(parents=True)
    (out / "previous.yaml").write_text("task: previous\n")
    with pytest.raises(FileNotFoundError, match="hellaswag_val_full.txt.bz2: data mirror file not found"):
        write_leaderboard_tasks(out, mirror)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tasks"]
    assert [p.name for p in out.iterdir()] == ["previous.yaml"]
    write_leaderboard_tasks(out, MIRROR, limit=2)
    assert not (out / "previous.yaml").exists() and sorted(p.name for p in out.parent.iterdir()) == ["tasks"]
    files = yaml.safe_load((out / f"{ARC}.yaml").read_text())["dataset_kwargs"]["data_files"]
    assert files["test"] == str(out.resolve() / "data" / "arc_challenge" / "test.jsonl") and Path(files["test"]).is_file()


# --------------------------------------------------------------------------- one real run


@pytest.fixture(scope="module")
def toy_model_dir(tmp_path_factory):
    """A random tiny Llama with a small BPE tokenizer trained on benchmark text (gemsft.pretrain.tokenizer).
    512 positions: lm-eval keeps the end of longer contexts and generates at most 256 tokens."""
    import torch

    from gemsft.pretrain.model import tiny_llama
    from gemsft.pretrain.tokenizer import train_tokenizer

    corpus = [r["question"] for r in files.read_jsonl(MIRROR / "gsm8k/test.jsonl")[:200]]
    corpus += [r["question"]["stem"] for r in files.read_jsonl(MIRROR / "arc_challenge/ARC-Challenge-Dev.jsonl")]
    tokenizer = train_tokenizer(corpus, vocab_size=1000)
    torch.manual_seed(0)
    model = tiny_llama({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                        "num_attention_heads": 1, "max_position_embeddings": 512}, tokenizer)
    path = tmp_path_factory.mktemp("toy_model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def split_examples(middle: str, pool: set[str]) -> list[str]:
    """The few-shot examples of a prompt's middle part: renderings from `pool`, each followed by the
    few-shot delimiter "\\n\\n" (an example may itself contain "\\n\\n")."""
    pieces, examples, current = middle.split("\n\n"), [], None
    assert pieces[-1] == "", "the examples must end with the delimiter"
    for piece in pieces[:-1]:
        current = piece if current is None else f"{current}\n\n{piece}"
        if current in pool:
            examples.append(current)
            current = None
    assert current is None, f"not a few-shot example of the expected split: {current[:200]!r}"
    return examples


@pytest.mark.usefixtures("one_torch_thread")
def test_all_six_tasks_run_on_a_tiny_model(toy_model_dir, tmp_path):
    tasks = write_leaderboard_tasks(tmp_path / "tasks", MIRROR, limit=LIMIT)
    # One subject with fewer documents, so the unweighted subject mean (the leaderboard's MMLU
    # score) differs from lm-eval's default size-weighted one.
    short = tmp_path / "tasks/data/mmlu/abstract_algebra/test.jsonl"
    files.write_jsonl(short, files.read_jsonl(short)[:1])
    out_json, samples_jsonl = tmp_path / "lm_eval.json", tmp_path / "samples.jsonl"
    tidy = evaluate_tasks(toy_model_dir, tasks, tmp_path / "tasks", out_json, batch_size=16,
                          include_defaults=False, samples_jsonl=samples_jsonl)

    scores = primary_scores(tidy, primary_metrics())
    assert set(scores) == set(LEADERBOARD_TASKS)
    assert all(0.0 <= value <= 1.0 for value in scores.values()), scores
    assert all(tidy[t]["n"] == LIMIT for t in tasks if t != MMLU)
    subjects = [tidy[mmlu_task(s)] for s in MMLU_SUBJECTS]
    assert [s["n"] for s in subjects] == [1] + [LIMIT] * 56
    assert scores[MMLU] == pytest.approx(sum(s["acc"] for s in subjects) / 57, abs=1e-12)  # unweighted mean
    # The stage's per-document rows average to the same scores (MMLU's weighted by subject size).
    documents = {(r["task"], r["metric"]): r for r in mean_rows(leaderboard_document_rows(samples_jsonl))}
    for row in score_rows(tidy):
        assert documents[row["task"], row["metric"]]["value"] == pytest.approx(row["value"], abs=1e-9), row
    assert documents["mmlu", "acc"]["n_prompts"] == 1 + 56 * LIMIT
    saved = files.read_json(out_json)
    assert {t: saved["n-shot"][t] for t in tasks} == {t: shots for t, (shots, _) in LEADERBOARD_TASKS.items()}

    records = files.read_jsonl(samples_jsonl)
    by_task: dict[str, list[dict]] = {}
    for record in records:  # GSM8K logs each document once per filter: keep the leaderboard's
        if record["task"] != GSM8K or record["filter"] == "strict-match":
            by_task.setdefault(record["task"], []).append(record)
    assert sorted(by_task) == sorted([t for t in tasks if t != MMLU] + [mmlu_task(s) for s in MMLU_SUBJECTS])
    assert all(len(rows) == (1 if task == mmlu_task("abstract_algebra") else LIMIT) for task, rows in by_task.items())
    data = tmp_path / "tasks" / "data"
    utils = lm_eval_utils()

    def count(task: str, contexts: list[str], query: str, pool: set[str], prefix: str = "") -> int:
        lengths = set()
        for context in contexts:
            assert context.startswith(prefix) and context.endswith(query), (task, context[-300:])
            lengths.add(len(split_examples(context[len(prefix):len(context) - len(query)], pool)))
        assert len(lengths) == 1, (task, lengths)  # every choice of a document has the same prompt
        return lengths.pop()

    def contexts(record: dict) -> list[str]:
        return [arg[0] for arg in record["arguments"]]

    # ARC: "Question: ...\nAnswer: <right choice>" examples from train.
    def arc_answer(d):
        return d["choices"]["text"][d["choices"]["label"].index(d["answerKey"])]

    arc_pool = {f"Question: {d['question']}\nAnswer: {arc_answer(d)}"
                for d in files.read_jsonl(data / "arc_challenge/train.jsonl")}
    for r in by_task[ARC]:
        assert count(ARC, contexts(r), f"Question: {r['doc']['question']}\nAnswer:", arc_pool) == 25

    # HellaSwag: "<query> <right ending>" examples from the held-out pool, never a scored document.
    def hellaswag_text(doc):
        processed = utils._hellaswag_doc(doc)
        return f"{processed['query']} {processed['choices'][processed['gold']]}"

    pool_docs = files.read_jsonl(data / "hellaswag/fewshot.jsonl")
    scored, _ = hellaswag_partition(read_hellaswag(MIRROR / "hellaswag/hellaswag_val_full.txt.bz2"))
    hellaswag_pool = {hellaswag_text(d) for d in pool_docs} - {hellaswag_text(d) for d in scored}
    assert len(hellaswag_pool) > 450
    for r in by_task[HELLASWAG]:
        query = utils._hellaswag_doc(r["doc"])["query"]
        assert count(HELLASWAG, contexts(r), query, hellaswag_pool) == 10

    # MMLU: the description, then the first 5 dev rows of the same subject, in order.
    def mmlu_text(d):
        choices = "".join(f"\n{letter}. {c}" for letter, c in zip("ABCD", d["choices"]))
        return f"{d['question'].strip()}{choices}\nAnswer:"

    for subject in MMLU_SUBJECTS:
        dev = files.read_jsonl(data / f"mmlu/{subject}/dev.jsonl")
        first_five = "".join(f"{mmlu_text(d)} {'ABCD'[d['answer']]}\n\n" for d in dev[:5])
        description = (f"The following are multiple choice questions (with answers) about "
                       f"{subject.replace('_', ' ')}.\n\n")
        for r in by_task[mmlu_task(subject)]:
            assert set(contexts(r)) == {description + first_five + mmlu_text(r["doc"])}
            assert count(subject, contexts(r), mmlu_text(r["doc"]),
                         {f"{mmlu_text(d)} {'ABCD'[d['answer']]}" for d in dev}, description) == 5

    # TruthfulQA: zero-shot, only lm-eval's fixed six-question preamble before the question.
    for r in by_task[TRUTHFULQA]:
        (context,) = set(contexts(r))
        assert context.startswith("Q: What is human life expectancy in the United States?\nA:")
        assert context.endswith(f"\n\nQ: {r['doc']['question']}\nA:")
        # No few-shot example: "\n\nQ: " only between the preamble's 6 questions (5) and before the question.
        assert context.count("\n\nQ: ") == 5 + 1
        assert len(r["arguments"]) == len(r["doc"]["mc2_targets"]["choices"])

    # WinoGrande (partial scoring): one context per option, the sentence up to the blank with that
    # option; the examples are train_xs sentences with their right option.
    def winogrande_text(d):
        right = utils.winogrande_doc_to_choice(d)[utils.winogrande_doc_to_text(d)]
        return f"{right} {utils.winogrande_doc_to_target(d)}"

    wino_pool = {winogrande_text(d) for d in files.read_jsonl(data / "winogrande/train_xs.jsonl")}
    for r in by_task[WINOGRANDE]:
        partial = utils.winogrande_doc_to_choice(r["doc"])
        assert [arg[1] for arg in r["arguments"]] == [" " + utils.winogrande_doc_to_target(r["doc"])] * 2
        for context, option in zip(contexts(r), partial):
            assert count(WINOGRANDE, [context], option, wino_pool) == 5

    # GSM8K: "Question: ...\nAnswer: <full solution>" examples from train; strict "#### n" scoring.
    gsm_pool = {f"Question: {d['question']}\nAnswer: {d['answer']}" for d in files.read_jsonl(data / "gsm8k/train.jsonl")}
    for r in by_task[GSM8K]:
        assert count(GSM8K, contexts(r), f"Question: {r['doc']['question']}\nAnswer:", gsm_pool) == 5
        assert r["arguments"][0][1]["until"] == ["Question:", "</s>", "<|im_end|>"]
