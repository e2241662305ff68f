"""Malformed input, case by case: each is a failure (an exception from the library function) with
one clear line naming the config key, file, or row and field, and leaves no partial output behind.
Everything runs at the function level (no Snakemake run) on the tiny fixtures of tests/conftest.py.

Two cases are behaviour checks, not errors: a row longer than train.max_length is dropped under
`drop` and cut to max_length under `truncate` (an error only when `drop` leaves no row)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from gemsft import files
from gemsft.chat_format import build_dataset, load_tokenizer, tokenize_example
from gemsft.config import validate_config
from gemsft.data import write_real_data
from gemsft.data.sources import MIRROR_ENV, mirror_root
from gemsft.score.reward_model import load_reward_model
from gemsft.train.sft import finetune

from test_sft import MESSAGES, TRAIN_CFG, sft_rows

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "config/schema/config.schema.yaml")


def fails_in_one_line(exc: type[BaseException], call, *expected: str, absent: tuple[Path, ...] = ()) -> str:
    """Run `call`: it must raise `exc` with a one-line message containing every `expected` string,
    and none of the `absent` output paths may exist afterwards. Returns the message."""
    with pytest.raises(exc) as err:
        call()
    message = str(err.value)
    assert message and "\n" not in message, repr(message)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    for path in absent:
        assert not Path(path).exists(), f"partial output {path} left behind"
    return message


# ---------------------------------------------------------------------------------- config keys

@pytest.fixture
def config() -> dict:
    return copy.deepcopy(yaml.safe_load((REPO / "config/config.yaml").read_text()))


def test_the_default_config_is_valid(config):
    validate_config(config, SCHEMA)


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "unknown_key", 1, "invalid config at 'train': Additional properties are not allowed ('unknown_key'"),
    ("train", "epochs", "three", "invalid config at 'train.epochs': 'three' is not of type 'number'"),
    ("train", "gem_betas", [0.5, 0.0], "invalid config at 'train.gem_betas.1'"),
    ("train", "gem_betas", [-1.0], "invalid config at 'train.gem_betas.0'"),
    ("train", "objectives", ["ce", "gem_v2"], "invalid config at 'train.objectives.1': 'gem_v2' is not one of"),
    ("train", "fused_loss", "maybe", "invalid config at 'train.fused_loss': 'maybe' is not one of [True, False, 'auto']"),
], ids=["unknown_key", "wrong_type", "beta_zero", "beta_negative", "unknown_objective", "fused_loss"])
def test_bad_config_key_is_one_clear_line(config, tmp_path, monkeypatch, section, key, value, message):
    monkeypatch.chdir(tmp_path)
    config[section][key] = value
    fails_in_one_line(ValueError, lambda: validate_config(config, SCHEMA), message)
    assert list(tmp_path.iterdir()) == []  # validation writes nothing


def test_best_of_n_larger_than_the_chat_samples(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = config["sampling"]["tasks"]["chat"]["n"]
    config["evaluation"]["bon_n"] = [1, n + 1]
    fails_in_one_line(ValueError, lambda: validate_config(config, SCHEMA),
                      f"invalid config at 'evaluation.bon_n': best-of-{n + 1} needs sampling.tasks.chat.n >= {n + 1}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("section, key, value", [
    ("model", "pretrained", "/nonexistent/model"),
    ("model", "pretrained", "./models/x"),
    ("model", "chat_template_from", "../no/such/instruct"),
    ("reward_model", "pretrained", "~/no-such-gemsft-reward-model"),
])
def test_missing_local_model_path_names_the_key(config, tmp_path, monkeypatch, section, key, value):
    monkeypatch.chdir(tmp_path)
    config[section][key] = value
    fails_in_one_line(ValueError, lambda: validate_config(config, SCHEMA),
                      f"invalid config at '{section}.{key}'", repr(value), "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_existing_local_model_paths_and_hub_ids_are_accepted(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "x").mkdir(parents=True)
    config["model"]["pretrained"] = "./models/x"
    config["model"]["chat_template_from"] = "meta-llama/Llama-3.1-8B-Instruct"  # a hub id is not checked
    config["reward_model"]["pretrained"] = str(tmp_path / "models")
    validate_config(config, SCHEMA)


# ------------------------------------------------------------------------ SFT data, via finetune

def finetune_fails(base, data: Path, tmp_path: Path, exc, *expected: str, cfg: dict | None = None) -> str:
    """finetune on `data` must fail in one line and write none of its outputs."""
    out, ckpt, metrics = tmp_path / "out", tmp_path / "ckpt", tmp_path / "metrics.json"
    return fails_in_one_line(
        exc, lambda: finetune(base, data, out, ckpt, metrics, "gem", 0.7, 0, cfg or TRAIN_CFG),
        *expected, absent=(out, ckpt, metrics))


@pytest.mark.parametrize("content", ["", "\n\n"], ids=["no_bytes", "blank_lines"])
def test_empty_sft_dataset(base_dir, tmp_path, content):
    data = tmp_path / "sft.jsonl"
    data.write_text(content)
    finetune_fails(base_dir, data, tmp_path, ValueError, f"{data}: the SFT dataset is empty")


@pytest.mark.parametrize("bad_row, message", [
    ({"id": "x"}, "row 2 has no assistant message in field 'messages'"),
    ({"id": "x", "messages": MESSAGES[:1]}, "row 2 has no assistant message in field 'messages'"),
], ids=["no_messages_field", "no_assistant_turn"])
def test_sft_row_missing_a_field(base_dir, tmp_path, bad_row, message):
    data = tmp_path / "sft.jsonl"
    files.write_jsonl(data, [*sft_rows(2), bad_row, *sft_rows(1)])
    finetune_fails(base_dir, data, tmp_path, ValueError, f"{data}: {message}")


@pytest.mark.parametrize("content", ["", "   \n\t"], ids=["empty", "whitespace"])
def test_empty_assistant_response(base_dir, tmp_path, content):
    data = tmp_path / "sft.jsonl"
    bad = {"id": "x", "messages": [MESSAGES[0], {"role": "assistant", "content": content}]}
    files.write_jsonl(data, [*sft_rows(1), bad])
    finetune_fails(base_dir, data, tmp_path, ValueError, f"{data}: row 1 field 'messages' has an empty assistant message")


def test_non_utf8_jsonl_names_the_file_and_line(base_dir, tmp_path):
    data = tmp_path / "sft.jsonl"
    good = json.dumps(sft_rows(1)[0]).encode()
    data.write_bytes(good + b"\n" + good.replace(b"cherry", b"ch\xe9rry") + b"\n")
    fails_in_one_line(ValueError, lambda: files.read_jsonl(data), f"{data}:2: not valid UTF-8", "0xe9")
    finetune_fails(base_dir, data, tmp_path, ValueError, f"{data}:2: not valid UTF-8")


def test_malformed_json_line_names_the_file_and_line(tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text(json.dumps(sft_rows(1)[0]) + "\n\n{not json\n")
    fails_in_one_line(ValueError, lambda: files.read_jsonl(data), f"{data}:3: not valid JSON")


# ------------------------------------------------------------------------------ length policies

def long_and_short_rows():
    long = {"id": "long", "messages": [MESSAGES[0], {"role": "assistant", "content": " ".join(["Cherry."] * 40)}]}
    return [long, *sft_rows(1)]


def test_a_row_longer_than_max_length_is_dropped_under_drop(tokenizer):
    rows = long_and_short_rows()
    short = len(tokenize_example(tokenizer, rows[1]["messages"])["input_ids"])
    assert len(tokenize_example(tokenizer, rows[0]["messages"])["input_ids"]) > short
    kept = build_dataset(tokenizer, rows, short, "drop", "sft.jsonl")
    assert [ex["input_ids"] for ex in kept] == [tokenize_example(tokenizer, rows[1]["messages"])["input_ids"]]


def test_a_row_longer_than_max_length_is_truncated_under_truncate(tokenizer):
    rows = long_and_short_rows()
    short = len(tokenize_example(tokenizer, rows[1]["messages"])["input_ids"])
    full = tokenize_example(tokenizer, rows[0]["messages"])
    kept = build_dataset(tokenizer, rows, short, "truncate", "sft.jsonl")
    assert len(kept) == 2 and len(kept[0]["input_ids"]) == short == len(kept[0]["labels"])
    assert kept[0]["input_ids"] == full["input_ids"][:short] and kept[0]["labels"] == full["labels"][:short]


def test_every_row_too_long_under_drop(base_dir, tmp_path):
    data = tmp_path / "sft.jsonl"
    files.write_jsonl(data, sft_rows(3))
    finetune_fails(base_dir, data, tmp_path, ValueError, f"{data}: no example fits train.max_length=8",
                   cfg={**TRAIN_CFG, "max_length": 8, "length_policy": "drop"})


# ----------------------------------------------------------------------------------- real data

def test_missing_mirror_path(tmp_path, monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    missing = tmp_path / "no-mirror"
    out = tmp_path / "real"
    fails_in_one_line(FileNotFoundError, lambda: write_real_data({"math": {}}, mirror_root(str(missing)), out),
                      f"data_mirror={str(missing)!r}", "does not exist", absent=(out,))


def test_real_data_row_missing_a_field(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "gsm8k").mkdir(parents=True)
    (mirror / "gsm8k/test.jsonl").write_text(json.dumps({"question": "q", "answer": "a\n#### 1"}) + "\n"
                                             + json.dumps({"question": "q2"}) + "\n")
    out = tmp_path / "real"
    fails_in_one_line(ValueError, lambda: write_real_data({"math": {"dataset": "gsm8k"}}, mirror_root(str(mirror)), out),
                      "gsm8k/test.jsonl: row 1 has no string field 'answer'", absent=(out,))


# ------------------------------------------------------------------------------ models on disk

def test_reward_model_without_a_score_head(base_dir, tmp_path):
    fails_in_one_line(ValueError, lambda: load_reward_model(base_dir), f"{base_dir} has no reward head",
                      "score.weight", "LlamaForCausalLM")


def test_tokenizer_without_a_chat_template(tokenizer, base_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(base_dir, bare)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    fails_in_one_line(ValueError, lambda: load_tokenizer(bare), f"{bare}: the tokenizer has no chat_template",
                      "model.chat_template_from")
    data = tmp_path / "sft.jsonl"
    files.write_jsonl(data, sft_rows(2))
    finetune_fails(bare, data, tmp_path, ValueError, f"{bare}: the tokenizer has no chat_template")


def test_corrupted_checkpoint_is_named(base_dir, tmp_path):
    """A cheaper variant of test_sft.py's partial/corrupted checkpoint test: a 2-step run leaves
    checkpoint-2; with its weights truncated, the rerun stops with one line naming it."""
    data = tmp_path / "sft.jsonl"
    files.write_jsonl(data, sft_rows(8))
    cfg = {**TRAIN_CFG, "epochs": 1, "save_steps": 2}
    first = tmp_path / "first"
    first.mkdir()
    finetune(base_dir, data, first / "out", first / "ckpt", first / "m.json", "ce", None, 0, cfg)
    weights = first / "ckpt" / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    out, metrics = tmp_path / "out", tmp_path / "metrics.json"
    fails_in_one_line(RuntimeError,
                      lambda: finetune(base_dir, data, out, first / "ckpt", metrics, "ce", None, 0, cfg),
                      f"training resumed from {first / 'ckpt' / 'checkpoint-2'} failed", "delete it",
                      absent=(out, metrics))


# ----------------------------------------------------------------------- incomplete sample files

def planned_chat(tmp_path, n=3, prompts=2):
    """A data directory with 3 chat records, a sampling section planning `prompts` of them with n
    samples each, and a complete samples file for that plan."""
    from gemsft.data.world import FILES

    records = [{"id": f"chat/{i}", "prompt": f"prompt {i}", "reference": "r"} for i in range(3)]
    files.write_jsonl(tmp_path / FILES["eval_chat"], records)
    sampling = {"temperature": 0.6, "top_k": 50, "top_p": 0.9, "seed": 42,
                "tasks": {"chat": {"n": n, "max_tokens": 8, "prompts": prompts}}}
    rows = [{"prompt_id": f"chat/{i}", "sample_index": j, "text": f"{i}.{j}", "num_tokens": 1, "finish_reason": "stop"}
            for i in range(prompts) for j in range(n)]
    return records, sampling, rows


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows[:3], "prompt 'chat/1' has 0 of its 3 samples"),           # cut off after a prompt
    (lambda rows: rows[:-1], "prompt 'chat/1' has 2 of its 3 samples"),          # cut off inside a prompt
    (lambda rows: rows + [dict(rows[0])], ":7: prompt 'chat/0' has sample 0 twice"),
    (lambda rows: rows + [{**rows[0], "prompt_id": "chat/2"}], ":7: prompt 'chat/2' is not one of the 2 planned prompts"),
    (lambda rows: [{**r, "sample_index": r["sample_index"] + 1} for r in rows], "prompt 'chat/0' has 2 of its 3 samples"),
], ids=["missing_prompt", "missing_sample", "duplicate_sample", "unplanned_prompt", "shifted_indices"])
def test_an_incomplete_samples_file_is_never_scored_as_whole(tmp_path, edit, message):
    from gemsft.sample.plan import read_planned_samples

    records, sampling, rows = planned_chat(tmp_path)
    path = tmp_path / "chat.jsonl"
    files.write_jsonl(path, rows)
    planned, read = read_planned_samples(path, tmp_path, sampling, "chat", records)
    assert planned == records[:2] and read == rows  # the complete file passes
    files.write_jsonl(path, edit(rows))
    fails_in_one_line(ValueError, lambda: read_planned_samples(path, tmp_path, sampling, "chat", records),
                      str(path), message)
