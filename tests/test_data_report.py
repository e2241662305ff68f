"""Data hygiene: `real_data` drops conversations and preference pairs with an empty or
whitespace-only turn and says so in data_report.json, and the report's data table shows what each
file held, what was dropped and what SFT's length policy left out. The mirror's UltraFeedback train
file has an empty chosen answer at row 833 (and an empty rejected one at row 478)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from gemsft import files
from gemsft.chat_format import build_dataset
from gemsft.data import load_sft, write_real_data
from gemsft.data.world import FILES, write_world
from gemsft.data.write import DATA_REPORT, EMPTY_TURN, clean
from gemsft.report.data_table import data_table, source_file

from conftest import MIRROR, REPO

needs_mirror = pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no data mirror at {MIRROR}")

UF_TRAIN = "ultrafeedback/train_clean.jsonl"
POLICY = {"policy": "drop", "max_length": 2048}


def raw_row(index: int) -> dict:
    with open(MIRROR / UF_TRAIN, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i == index:
                return json.loads(line)
    raise IndexError(index)


def metrics_file(path: Path, rows: int, examples: int) -> Path:
    """A run's train_metrics.json as `gemsft.train.sft.finetune` writes it (the keys the table reads)."""
    files.write_json(path, {"seed": 1, "rows": rows, "examples": examples, "train_loss": 1.0})
    return path


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real") / "data"
    write_real_data({"sft": {"train": "ultrafeedback_train", "limit": 840, "test_limit": 3},
                     "preferences": {"dataset": "ultrafeedback_train", "limit": 840},
                     "chat": {"dataset": "alpaca_eval", "limit": 2}}, MIRROR, out)
    return out


@needs_mirror
def test_the_mirrors_empty_turn_is_dropped_and_reported(real_dir, tokenizer):
    empty_chosen, empty_rejected = raw_row(833), raw_row(478)
    assert empty_chosen["chosen"] == "" and empty_rejected["rejected"] == ""
    dropped_id = f"ultrafeedback_train/{empty_chosen['source_index']}"
    report = files.read_json(real_dir / DATA_REPORT)
    assert report["files"]["sft_train"] == {
        "file": FILES["sft_train"], "dataset": "ultrafeedback_train", "rows_in": 840, "rows_out": 839,
        "dropped": {EMPTY_TURN: 1}, "dropped_ids": {EMPTY_TURN: [dropped_id]}}
    # A preference pair needs both answers: rows 478 and 833 go.
    assert report["files"]["preferences"]["dropped_ids"] == {
        EMPTY_TURN: [f"ultrafeedback_train/{empty_rejected['source_index']}", dropped_id]}
    assert report["files"]["eval_chat"] == {"file": FILES["eval_chat"], "dataset": "alpaca_eval", "rows_in": 2,
                                            "rows_out": 2, "dropped": {}, "dropped_ids": {}}
    assert "train_metrics.json" in report["length_policy"]
    written = files.read_jsonl(real_dir / FILES["sft_train"])
    assert [r["id"] for r in written] == [r["id"] for r in load_sft("ultrafeedback_train", MIRROR, 840)
                                          if r["id"] != dropped_id]
    assert files.read_json(real_dir / FILES["summary"])["counts"]["sft_train"] == 839
    # SFT aborted on the loaded rows; the written ones train (rows 820-839 keep the test short).
    loaded = load_sft("ultrafeedback_train", MIRROR, 840)
    with pytest.raises(ValueError, match="row 833 field 'messages' has an empty assistant message"):
        build_dataset(tokenizer, loaded, 4096, "truncate", "sft_train")
    assert len(build_dataset(tokenizer, written[820:], 4096, "truncate", "sft_train")) == 19


def test_whitespace_turns_of_any_speaker_are_dropped():
    rows = [{"id": "a", "messages": [{"role": "system", "content": ""}, {"role": "user", "content": "Hi"},
                                     {"role": "assistant", "content": "Hello"}]},
            {"id": "b", "messages": [{"role": "user", "content": " \n\t"}, {"role": "assistant", "content": "x"}]},
            {"id": "c", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x"},
                                     {"role": "user", "content": "More?"}, {"role": "assistant", "content": "  "}]}]
    kept, report = clean("sft_test", rows)
    assert [r["id"] for r in kept] == ["a"]  # an empty system message is no turn of the dialogue
    assert report == {"rows_in": 3, "rows_out": 1, "dropped": {EMPTY_TURN: 2}, "dropped_ids": {EMPTY_TURN: ["b", "c"]}}
    # Files that hold no dialogue are passed through.
    assert clean("eval_chat", [{"id": "q", "prompt": "", "reference": ""}])[1]["dropped"] == {}


@needs_mirror
def test_a_file_with_only_empty_turns_is_an_error(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "ultrafeedback").mkdir(parents=True)
    row = {"prompt": "p", "chosen": " ", "rejected": "r", "source_index": 0, "metadata": {}}
    (mirror / UF_TRAIN).write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"every row of preferences \(ultrafeedback_train\) has an empty turn"):
        write_real_data({"preferences": {"dataset": "ultrafeedback_train"}}, mirror, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@needs_mirror
def test_data_table_shows_the_drops_and_the_length_policy(real_dir, tmp_path):
    runs = [metrics_file(tmp_path / f"m{i}.json", 839, 827) for i in range(2)]
    table = data_table(real_dir, runs, POLICY).set_index("file")
    sft = table.loc[FILES["sft_train"]]
    assert (sft["rows in"], sft["dropped: empty turn"], sft["rows written"]) == ("840", "1", "839")
    assert (sft["SFT: left out by length policy"], sft["SFT: trained on"]) == ("12 (drop at 2048 tokens)", "827")
    assert table.loc[FILES["preferences"], "dropped: empty turn"] == "2"
    assert table.loc[FILES["sft_test"], "SFT: trained on"] == ""
    # Runs that disagree (they should not: same data, same tokenizer) show the range.
    odd = metrics_file(tmp_path / "odd.json", 839, 830)
    assert data_table(real_dir, [*runs, odd], POLICY).set_index("file").loc[
        FILES["sft_train"], "SFT: left out by length policy"] == "9–12 (drop at 2048 tokens)"
    assert source_file(real_dir) == real_dir / DATA_REPORT
    files.write_json(tmp_path / "bad.json", {"rows": 3})
    with pytest.raises(ValueError, match="bad.json: no 'examples' in the training metrics"):
        data_table(real_dir, [tmp_path / "bad.json"], POLICY)


def test_data_table_of_the_world_counts_its_files(tmp_path):
    """The world is generated clean: no data report, its rows from world.json, none dropped."""
    with open(REPO / "config" / "smoke.yaml", encoding="utf-8") as f:
        smoke = yaml.safe_load(f)["world"]
    with open(REPO / "config" / "config.yaml", encoding="utf-8") as f:
        cfg = yaml.safe_load(f)["world"]
    for key, value in copy.deepcopy(smoke).items():  # as Snakemake merges config files: dicts key by key
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    counts = write_world(cfg, tmp_path / "world")["counts"]
    run = metrics_file(tmp_path / "m.json", counts["sft_train"], counts["sft_train"])
    table = data_table(tmp_path / "world", [run], POLICY)
    assert source_file(tmp_path / "world").name == FILES["summary"]
    assert table["file"].tolist() == [FILES[out] for out in FILES if out in counts]  # the pipeline's order
    assert table["rows in"].tolist() == table["rows written"].tolist() == [str(counts[o]) for o in FILES if o in counts]
    assert set(table["dropped: empty turn"]) == {"0"} and set(table["dataset"]) == {"world"}
    assert table.set_index("file").loc[FILES["sft_train"], "SFT: left out by length policy"] == \
        "0 (drop at 2048 tokens)"
