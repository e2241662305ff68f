"""Tests for gemsft.data, the loaders of the paper's real data (issue 5, "Real data").

They read the real local mirror (shared/data, or $GEMSFT_DATA_MIRROR as CI sets it) in place; the
expected counts and first rows come from shared/data/SOURCES.md and from reading the files directly.
The hub path is checked with a fake `datasets.load_dataset` (no network). Malformed inputs are small
files written under tmp_path, next to symbolic links to the mirror's good files.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import datasets
import pandas as pd
import pytest

from gemsft import files
from gemsft.data import (DATASETS, format_for_sft, load, load_alpaca_eval, load_creative, load_gsm8k,
                         load_humaneval, load_preferences, load_sft, load_text, mirror_root, read_gsm8k,
                         write_real_data)
from gemsft.data import gsm8k as gsm8k_mod
from gemsft.data.sources import MIRROR_ENV, UNPINNED
from gemsft.data.humaneval import humaneval_problems
from gemsft.chat_format import IGNORE_INDEX, tokenize_example
from gemsft.pretrain.tokenizer import EOS
from gemsft.data.world import FILES
from gemsft.data.world.arithmetic import PAPER_PROMPT

from conftest import MIRROR  # noqa: E402
pytestmark = pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no data mirror at {MIRROR}")

# shared/data/SOURCES.md
COUNTS = {"ultrafeedback_train": 1000, "ultrafeedback_test": 200, "alpaca_eval": 805, "humaneval": 164,
          "gsm8k": 1319, "gsm8k_train": 7473, "poem": 573, "story": 52665, "tinystories": 2317}
FIRST_ALPACA = "What are the names of some famous actors that started their careers on Broadway?"
FIRST_POEM = "Write a poem titled 'The Phoenix and the Turtle' with no more than 200 words."


def raw_jsonl(relative: str) -> list[dict]:
    with open(MIRROR / relative, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def link_mirror(dest: Path, exclude: str = "") -> Path:
    """A mirror in tmp_path whose files are links to the real ones (nothing is copied), minus `exclude`."""
    for source in DATASETS.values():
        if source.mirror_path == exclude:
            continue
        target = dest / source.mirror_path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(MIRROR / source.mirror_path)
    return dest


def write_lines(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ the mirror

@pytest.mark.parametrize("name", sorted(COUNTS))
def test_row_counts_match_sources_md(name):
    records = load(name, MIRROR)
    assert len(records) == COUNTS[name]
    assert len({r["id"] for r in records}) == len(records)


def test_ultrafeedback_sft_and_preferences():
    raw = raw_jsonl("ultrafeedback/train_clean.jsonl")
    sft = load_sft("ultrafeedback_train", MIRROR)
    prefs = load_preferences("ultrafeedback_train", MIRROR)
    assert sft[0] == {"id": "ultrafeedback_train/27808", "family": "chat", "messages": [
        {"role": "user", "content": "how to cook t-bone in the oven"},
        {"role": "assistant", "content": raw[0]["chosen"]}]}
    assert raw[0]["chosen"].startswith("To cook a delicious T-bone steak in the oven")
    for record, pref, row in zip(sft, prefs, raw):
        assert record["messages"] == [{"role": "user", "content": row["prompt"]},
                                      {"role": "assistant", "content": row["chosen"]}]
        assert pref == {"id": record["id"], "family": "chat", "prompt": row["prompt"], "chosen": row["chosen"],
                        "rejected": row["rejected"]}
    # The real subset has one empty chosen and one empty rejected answer: loaded as they are; the
    # real_data stage drops them (tests/test_data_report.py).
    assert sum(not r["chosen"] for r in prefs) == 1 and sum(not r["rejected"] for r in prefs) == 1
    assert len(load_preferences("ultrafeedback_test", MIRROR)) == 200


def test_alpaca_eval_records():
    records = load_alpaca_eval(mirror=MIRROR)
    raw = json.loads((MIRROR / "alpaca_eval/gpt4_1106_preview_model_outputs.json").read_text(encoding="utf-8"))
    assert records[0]["prompt"] == FIRST_ALPACA and records[0]["dataset"] == "helpful_base"
    assert records[0]["reference"] == raw[0]["output"] and records[0]["reference"].startswith("Several famous actors")
    assert all(set(r) == {"id", "prompt", "reference", "dataset"} for r in records)
    assert len({r["prompt"] for r in records}) == 805
    counts = pd.Series([r["dataset"] for r in records]).value_counts().to_dict()
    assert counts == {"selfinstruct": 252, "oasst": 188, "koala": 156, "helpful_base": 129, "vicuna": 80}


def test_gsm8k_records_and_read_gsm8k():
    records = load_gsm8k(mirror=MIRROR)
    first = records[0]
    assert first["answer"] == 18 and isinstance(first["answer"], int)
    assert first["question"].startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert first["prompt"] == PAPER_PROMPT.format(question=first["question"])
    assert first["reference"].endswith("#### 18") and set(first) == {"id", "prompt", "question", "answer", "reference"}
    # Commas and signs of the final numbers (rows found by reading the file).
    assert records[146]["answer"] == 2125 and records[611]["answer"] == 1450000 and records[489]["answer"] == -10
    rows = read_gsm8k(MIRROR / "gsm8k/test.jsonl")
    assert [set(r) for r in rows[:1]] == [{"question", "solution", "answer"}]
    assert [(r["question"], r["solution"], r["answer"]) for r in rows] == \
        [(r["question"], r["reference"], r["answer"]) for r in records]
    assert len(read_gsm8k(MIRROR / "gsm8k/train.jsonl", limit=5)) == 5
    assert gsm8k_mod.parse_final_answer("so\n#### 1,234.50") == 1234.5
    assert gsm8k_mod.parse_final_answer("no final answer") is None


def test_humaneval_from_mirror_equals_the_package():
    assert load_humaneval(mirror=MIRROR) == humaneval_problems()
    assert load_humaneval(mirror=None, limit=3) == humaneval_problems()[:3]
    with gzip.open(MIRROR / "humaneval/HumanEval.jsonl.gz", "rt") as f:
        assert sum(1 for line in f if line.strip()) == 164


def test_creative_prompts():
    poems = load_creative("poem", MIRROR)
    assert poems[0] == {"id": "poem/0", "prompt": FIRST_POEM}
    stories = load_creative("story", MIRROR, limit=1000)
    assert len(stories) == 1000 and stories[0]["prompt"].startswith("Write a story titled")


def test_tinystories_documents_are_the_stories_between_separators():
    text = (MIRROR / "tinystories/tinystories_sample.txt").read_text(encoding="utf-8")
    docs = load_text("tinystories", MIRROR)
    assert docs[0]["text"].startswith("One day, a little girl named Lily found a needle in her room.")
    assert "<|endoftext|>".join(d["text"] for d in docs).replace("\n", "") == \
        "<|endoftext|>".join(s.strip() for s in text.split("<|endoftext|>") if s.strip()).replace("\n", "")
    assert load_text("tinystories", MIRROR, limit=3) == docs[:3]


def test_limit_takes_the_first_rows():
    for name in ("ultrafeedback_train", "alpaca_eval", "gsm8k", "humaneval", "poem"):
        full = load(name, MIRROR)
        assert load(name, MIRROR, limit=7) == full[:7]
        assert load(name, MIRROR, limit=0) == []
        assert load(name, MIRROR, limit=10**6) == full
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="limit must be"):
            load("gsm8k", MIRROR, limit=bad)


def test_unknown_or_wrong_kind_of_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load("nope", MIRROR)
    with pytest.raises(ValueError, match="is of kind gsm8k, not alpaca_eval"):
        load_alpaca_eval("gsm8k", MIRROR)


# ------------------------------------------------------------------------------ mirror_root

def test_mirror_root(tmp_path, monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert mirror_root(None) is None and mirror_root("") is None
    assert mirror_root(str(MIRROR)) == MIRROR
    monkeypatch.setenv(MIRROR_ENV, str(MIRROR))
    assert mirror_root(None) == MIRROR
    assert mirror_root("") is None  # the config key wins over the variable
    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path)
    assert mirror_root("m") == (tmp_path / "m").resolve()
    with pytest.raises(FileNotFoundError) as err:
        mirror_root("missing")
    assert "data_mirror='missing'" in str(err.value) and str(tmp_path / "missing") in str(err.value)
    assert "\n" not in str(err.value)
    monkeypatch.setenv(MIRROR_ENV, "gone")
    with pytest.raises(FileNotFoundError, match=f"{MIRROR_ENV}='gone'"):
        mirror_root(None)


def test_missing_mirror_file_names_the_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="'gsm8k': gsm8k/test.jsonl is missing"):
        load_gsm8k(mirror=tmp_path)


# ---------------------------------------------------------------------------- malformed rows

def good_uf(i):
    return {"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "source_index": i, "metadata": {}}


@pytest.mark.parametrize("path, rows, loader, message", [
    ("ultrafeedback/train_clean.jsonl", [good_uf(0), good_uf(1), {"prompt": "p", "rejected": "r", "source_index": 2}],
     lambda m: load_sft("ultrafeedback_train", m), "ultrafeedback/train_clean.jsonl: row 2 has no string field 'chosen'"),
    ("ultrafeedback/train_clean.jsonl", [good_uf(0), {**good_uf(1), "rejected": None}],
     lambda m: load_preferences("ultrafeedback_train", m),
     "ultrafeedback/train_clean.jsonl: row 1 has no string field 'rejected'"),
    ("ultrafeedback/eval_clean.jsonl", [{**good_uf(0), "prompt": 3}],
     lambda m: load_sft("ultrafeedback_test", m), "ultrafeedback/eval_clean.jsonl: row 0 has no string field 'prompt'"),
    ("ultrafeedback/eval_clean.jsonl", [good_uf(0), {**good_uf(1), "source_index": "x"}],
     lambda m: load_sft("ultrafeedback_test", m), "ultrafeedback/eval_clean.jsonl: row 1 has no integer field 'source_index'"),
    ("ultrafeedback/eval_clean.jsonl", [good_uf(0), "{not json", good_uf(2)],
     lambda m: load_sft("ultrafeedback_test", m), "ultrafeedback/eval_clean.jsonl:2: not valid JSON"),
    ("ultrafeedback/eval_clean.jsonl", [good_uf(0), [1, 2]],
     lambda m: load_sft("ultrafeedback_test", m), "ultrafeedback/eval_clean.jsonl: row 1 is not a JSON object"),
    ("gsm8k/test.jsonl", [{"question": "q", "answer": "a\n#### 3"}, {"question": "q", "answer": "no number"}],
     lambda m: load_gsm8k(mirror=m), "gsm8k/test.jsonl: row 1 field 'answer' does not end with '#### <number>'"),
    ("gsm8k/test.jsonl", [{"answer": "a\n#### 3"}],
     lambda m: load_gsm8k(mirror=m), "gsm8k/test.jsonl: row 0 has no string field 'question'"),
    ("humaneval/HumanEval.jsonl.gz", [{"task_id": "HumanEval/0", "prompt": "def f(): pass", "test": "t"}],
     lambda m: load_humaneval(mirror=m), "humaneval/HumanEval.jsonl.gz: row 0 has no string field 'entry_point'"),
])
def test_malformed_row_is_a_one_line_error(tmp_path, path, rows, loader, message):
    target = tmp_path / path
    if path.endswith(".gz"):
        target.parent.mkdir(parents=True)
        with gzip.open(target, "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    else:
        write_lines(target, rows)
    with pytest.raises(ValueError) as err:
        loader(tmp_path)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_malformed_alpaca_eval_and_parquet(tmp_path):
    path = tmp_path / "alpaca_eval/gpt4_1106_preview_model_outputs.json"
    path.parent.mkdir()
    path.write_text(json.dumps([{"instruction": "i", "output": "o", "dataset": "d"}, {"instruction": "i", "output": 3}]))
    with pytest.raises(ValueError, match=r"^alpaca_eval/gpt4_1106_preview_model_outputs.json: row 1 has no "
                                         r"string field 'output'$"):
        load_alpaca_eval(mirror=tmp_path)
    path.write_text(json.dumps({"instruction": "i"}))
    with pytest.raises(ValueError, match="expected a JSON list of rows"):
        load_alpaca_eval(mirror=tmp_path)
    parquet = tmp_path / DATASETS["poem"].mirror_path
    parquet.parent.mkdir()
    pd.DataFrame({"instruction": ["Write a poem.", None]}).to_parquet(parquet)
    with pytest.raises(ValueError, match=r"poem_generation_test.parquet: row 1 has no string field 'instruction'$"):
        load_creative("poem", tmp_path)
    pd.DataFrame({"text": ["Write a poem."]}).to_parquet(parquet)
    with pytest.raises(ValueError, match="no column 'instruction'"):
        load_creative("poem", tmp_path)


# ---------------------------------------------------------------------------------- the hub

class FakeLoadDataset:
    """Stands in for datasets.load_dataset: records every call, returns a datasets.Dataset."""

    def __init__(self, rows):
        self.rows, self.calls = rows, []

    def __call__(self, path, name=None, **kwargs):
        self.calls.append({"path": path, "name": name, **kwargs})
        return datasets.Dataset.from_list(self.rows)


def fake_hub(monkeypatch, rows) -> FakeLoadDataset:
    fake = FakeLoadDataset(rows)
    monkeypatch.setattr(datasets, "load_dataset", fake)
    return fake


def conversation(*turns):
    return [{"role": role, "content": text} for role, text in turns]


HUB_UF = [{"prompt": f"q{i}", "prompt_id": f"id{i}",
           "messages": conversation(("user", f"q{i}"), ("assistant", f"a{i}"), ("user", "more"), ("assistant", "ok")),
           "chosen": conversation(("user", f"q{i}"), ("assistant", f"a{i}")),
           "rejected": conversation(("user", f"q{i}"), ("assistant", f"bad{i}"))} for i in range(5)]


def test_hub_ultrafeedback_uses_the_pinned_revision(monkeypatch):
    fake = fake_hub(monkeypatch, HUB_UF)
    records = load_sft("ultrafeedback_test", None, limit=3)
    source = DATASETS["ultrafeedback_test"]
    assert fake.calls == [{"path": "HuggingFaceH4/ultrafeedback_binarized", "name": None, "split": "test_sft",
                           "revision": source.hub_revision}]
    assert [r["id"] for r in records] == ["ultrafeedback_test/id0", "ultrafeedback_test/id1", "ultrafeedback_test/id2"]
    assert records[0] == {"id": "ultrafeedback_test/id0", "family": "chat", "messages": HUB_UF[0]["messages"]}
    prefs = load_preferences("ultrafeedback_train", None)
    assert fake.calls[-1]["split"] == "train_sft"
    assert prefs[4] == {"id": "ultrafeedback_train/id4", "family": "chat", "prompt": "q4", "chosen": "a4",
                        "rejected": "bad4"}


def test_hub_gsm8k_alpaca_creative(monkeypatch):
    fake = fake_hub(monkeypatch, [{"question": "How many?", "answer": "2 + 2 = 4\n#### 4"}] * 3)
    records = load_gsm8k("gsm8k", None, limit=2)
    assert fake.calls == [{"path": "openai/gsm8k", "name": "main", "split": "test",
                           "revision": DATASETS["gsm8k"].hub_revision}]
    assert len(records) == 2 and records[1]["answer"] == 4 and records[1]["id"] == "gsm8k/1"

    fake = fake_hub(monkeypatch, [{"instruction": "i", "output": "o", "dataset": "d", "generator": "gpt4_turbo"}])
    assert load_alpaca_eval(mirror=None) == [{"id": "alpaca_eval/0", "prompt": "i", "reference": "o", "dataset": "d"}]
    source = DATASETS["alpaca_eval"]
    assert fake.calls == [{"path": "json", "name": None, "split": "train", "data_files":
                           f"hf://datasets/tatsu-lab/alpaca_eval@{source.hub_revision}/alpaca_eval_gpt4_baseline.json"}]

    fake = fake_hub(monkeypatch, [{"instruction": "Write a poem."}])
    assert load_creative("poem", None) == [{"id": "poem/0", "prompt": "Write a poem."}]
    assert fake.calls[0]["path"] == "parquet" and DATASETS["poem"].hub_revision in fake.calls[0]["data_files"]


def test_hub_malformed_messages(monkeypatch):
    bad = [HUB_UF[0], {**HUB_UF[1], "messages": conversation(("user", "q"), ("robot", "a"))}]
    fake_hub(monkeypatch, bad)
    with pytest.raises(ValueError, match=r"^HuggingFaceH4/ultrafeedback_binarized@\S+ \(default/train_sft\): row 1 "
                                         r"field 'messages' message 1 has no role"):
        load_sft("ultrafeedback_train", None)
    fake_hub(monkeypatch, [{**HUB_UF[0], "messages": conversation(("user", "q"))}])
    with pytest.raises(ValueError, match="row 0 field 'messages' has no assistant message"):
        load_sft("ultrafeedback_train", None)


def test_registry_revisions_are_pinned_or_marked():
    for source in DATASETS.values():
        assert source.hub_revision == UNPINNED or len(source.hub_revision) == 40, source.name
        # Every dataset of the paper is pinned; only the tiny model's pretraining text is not.
        assert source.hub_revision != UNPINNED or source.kind == "text", source.name
        assert (MIRROR / source.mirror_path).is_file(), source.mirror_path


# ---------------------------------------------------------------------------- write_real_data

CONFIG = {"sft": {"train": "ultrafeedback_train", "test": "ultrafeedback_test", "limit": 20, "test_limit": 5},
          "chat": {"dataset": "alpaca_eval", "limit": 8}, "code": {"dataset": "humaneval", "limit": 4},
          "math": {"dataset": "gsm8k", "limit": 6}, "preferences": {"dataset": "ultrafeedback_train", "limit": 30},
          "creative": {"dataset": "poem", "limit": 3}, "pretrain": {"dataset": "tinystories", "limit": 7}}


def test_write_real_data_writes_every_file(tmp_path):
    out = tmp_path / "real"
    summary = write_real_data(CONFIG, MIRROR, out)
    expected = {FILES[k] for k in ("sft_train", "sft_test", "eval_chat", "eval_code", "eval_math", "preferences",
                                   "pretrain", "summary")} | {"eval_creative.jsonl", "data_report.json"}
    assert {p.name for p in out.iterdir()} == expected
    assert summary["counts"] == {"sft_train": 20, "sft_test": 5, "eval_chat": 8, "eval_code": 4, "eval_math": 6,
                                 "preferences": 30, "eval_creative": 3, "pretrain": 7}
    assert files.read_jsonl(out / FILES["pretrain"]) == load_text("tinystories", MIRROR, 7)
    assert files.read_json(out / FILES["summary"]) == summary
    assert summary["origins"]["eval_math"] == {"dataset": "gsm8k", "mirror_path": "gsm8k/test.jsonl"}
    assert files.read_jsonl(out / FILES["sft_train"]) == load_sft("ultrafeedback_train", MIRROR, 20)
    assert files.read_jsonl(out / FILES["eval_math"]) == load_gsm8k("gsm8k", MIRROR, 6)
    assert files.read_jsonl(out / FILES["eval_code"]) == humaneval_problems()[:4]
    assert [p.name for p in tmp_path.iterdir()] == ["real"]


def test_write_real_data_leaves_nothing_when_a_loader_fails(tmp_path):
    mirror = link_mirror(tmp_path / "mirror", exclude="gsm8k/test.jsonl")
    write_lines(mirror / "gsm8k/test.jsonl", [{"question": "q", "answer": "a\n#### 1"}, {"question": "q"}])
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ValueError, match="gsm8k/test.jsonl: row 1 has no string field 'answer'"):
        write_real_data(CONFIG, mirror, work / "real")
    assert list(work.iterdir()) == []
    # An existing directory survives a failed rewrite untouched.
    (work / "real").mkdir()
    (work / "real" / "keep.txt").write_text("old")
    with pytest.raises(ValueError):
        write_real_data(CONFIG, mirror, work / "real")
    assert [p.name for p in work.iterdir()] == ["real"] and (work / "real" / "keep.txt").read_text() == "old"


@pytest.mark.parametrize("cfg, message", [
    ({}, "names no section"),
    ({"eval": {}}, "unknown sections"),
    ({"chat": {"dataset": "alpaca_eval", "n": 3}}, "unknown keys"),
    ({"math": {"dataset": "alpaca_eval"}}, "is of kind alpaca_eval, not gsm8k"),
    ({"chat": {"limit": 0}}, "eval_chat .* has no rows"),
])
def test_write_real_data_config_errors(tmp_path, cfg, message):
    with pytest.raises(ValueError, match=message):
        write_real_data(cfg, MIRROR, tmp_path / "real")
    assert not (tmp_path / "real").exists()


def test_write_real_data_from_the_hub(tmp_path, monkeypatch):
    fake = fake_hub(monkeypatch, HUB_UF)
    summary = write_real_data({"sft": {"limit": 2, "test_limit": 1}}, None, tmp_path / "real")
    assert [c["split"] for c in fake.calls] == ["train_sft", "test_sft"]
    assert summary["counts"] == {"sft_train": 2, "sft_test": 1}
    assert summary["origins"]["sft_train"]["hub_revision"] == DATASETS["ultrafeedback_train"].hub_revision


# ------------------------------------------------------------------------------ tokenization

# tests/conftest.py's tokenizer, trained on the mirror's UltraFeedback text.
@pytest.fixture(scope="module")
def tokenizer_corpus():
    rows = raw_jsonl("ultrafeedback/train_clean.jsonl")[:50]
    return [r["prompt"] + "\n" + r["chosen"] for r in rows]


@pytest.fixture(scope="module")
def tokenizer_vocab_size():
    return 400


def test_sft_records_tokenize_with_assistant_only_labels(tokenizer):
    records = load_sft("ultrafeedback_train", MIRROR, limit=5)
    for record in records:
        example = tokenize_example(tokenizer, record["messages"])
        supervised = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
        assert tokenizer.decode(supervised) == record["messages"][1]["content"] + EOS
    lengths = [len(tokenize_example(tokenizer, r["messages"])["input_ids"]) for r in records]
    limit = sorted(lengths)[2]
    kept = format_for_sft(records, tokenizer, limit, "drop")
    assert len(kept) == sum(n <= limit for n in lengths)
    truncated = format_for_sft(records, tokenizer, limit, "truncate")
    assert len(truncated) == 5 and all(len(ex["input_ids"]) <= limit for ex in truncated)
