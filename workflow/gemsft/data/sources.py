"""Where each real dataset of the paper comes from: a Hugging Face hub id pinned to a revision, or
one file of the local mirror (the offline copy described by shared/data/SOURCES.md).

The mirror is chosen by the config key `data_mirror` (see `mirror_root`); without one the loaders
call `datasets.load_dataset` with the pinned revision below.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

MIRROR_KEY = "data_mirror"
MIRROR_ENV = "GEMSFT_DATA_MIRROR"

# Revision used where no commit sha is known here. It is NOT reproducible (the branch moves).
UNPINNED = "main"

# Hub commits of the paper's datasets. This machine cannot reach the hub, so none was fetched here:
# each is the `main` sha that public code and dataset surveys pin (GSM8K and HumanEval in several
# independent projects; UltraFeedback as the Hub API's sha of `main` read on 2026-08-11, unchanged
# since 2024-10-16; AlpacaEval as "AlpacaEval 2 data"). gemsft.data.leaderboard pins the same GSM8K commit.
ULTRAFEEDBACK_HUB_COMMIT = "3949bf5f8c17c394422ccfab0c31ea9c20bdeb85"
ALPACA_EVAL_HUB_COMMIT = "2edc6fad8be6b14ea7230aabfd08188da6b8b814"
GSM8K_HUB_COMMIT = "740312add88f781978c0658806c59bc2815b9866"
HUMANEVAL_HUB_COMMIT = "7dce6050a7d6d172f3cc5c32aa97f52fa1a2e544"

# Commits of GitHub repositories that hold the mirror's copies (shared/data/SOURCES.md). They are real,
# fixed commits; the GEM repo commit is where the creative-writing data was added.
GEM_REPO_COMMIT = "477d56c3b993ee0950ec31db6e591e752fd902ac"
ALPACA_EVAL_REPO_COMMIT = "cd543a149df89434d8a54582c0151c0b945c3d20"
GSM8K_REPO_COMMIT = "3101c7d5072418e28b9008a6636bde82a006892c"
HUMAN_EVAL_REPO_COMMIT = "6d43fb980f9fee3c892a914eda09951f772ad10d"


@dataclasses.dataclass(frozen=True)
class DataSource:
    """One dataset. `kind` selects the loader (and so the record format); `hub_*` say what
    `datasets.load_dataset` reads without a mirror; `mirror_path` is the file inside the mirror.

    `hub_data_files`, when set, is a URL template (with `{revision}`) of a file that
    `load_dataset(hub_format, data_files=..., split="train")` reads instead of the hub repo itself
    (for repos that only ship a loading script, which datasets >= 4 no longer runs, or that live on
    GitHub)."""

    name: str
    kind: str
    hub_id: str
    hub_revision: str
    hub_config: str | None
    split: str
    mirror_path: str
    hub_data_files: str | None = None
    hub_format: str | None = None
    note: str = ""

    @property
    def hub_label(self) -> str:
        """What the hub path reads, for error messages and summaries."""
        if self.hub_data_files:
            return self.hub_data_files.format(revision=self.hub_revision)
        return f"{self.hub_id}@{self.hub_revision} ({self.hub_config or 'default'}/{self.split})"


DATASETS: dict[str, DataSource] = {s.name: s for s in (
    DataSource(
        name="ultrafeedback_train", kind="ultrafeedback",
        hub_id="HuggingFaceH4/ultrafeedback_binarized", hub_revision=ULTRAFEEDBACK_HUB_COMMIT, hub_config=None,
        split="train_sft",
        mirror_path="ultrafeedback/train_clean.jsonl",
        note="hub: 61,135 rows with `messages`; mirror: 1,000 rows {prompt, chosen, rejected} sampled from "
             "trl-lib/ultrafeedback_binarized (seed 42), not the H4 train_sft rows"),
    DataSource(
        name="ultrafeedback_test", kind="ultrafeedback",
        hub_id="HuggingFaceH4/ultrafeedback_binarized", hub_revision=ULTRAFEEDBACK_HUB_COMMIT, hub_config=None,
        split="test_sft",
        mirror_path="ultrafeedback/eval_clean.jsonl",
        note="hub: 1,000 rows; mirror: 200 rows"),
    DataSource(
        name="alpaca_eval", kind="alpaca_eval",
        hub_id="tatsu-lab/alpaca_eval", hub_revision=ALPACA_EVAL_HUB_COMMIT, hub_config="alpaca_eval_gpt4_baseline", split="eval",
        mirror_path="alpaca_eval/gpt4_1106_preview_model_outputs.json",
        # The hub repo ships a loading script; its AlpacaEval 2.0 baseline file holds the 805
        # instructions with gpt4_1106_preview ("gpt4_turbo") outputs.
        hub_data_files="hf://datasets/tatsu-lab/alpaca_eval@{revision}/alpaca_eval_gpt4_baseline.json",
        hub_format="json",
        note="805 instructions with gpt4_1106_preview outputs (the win-rate reference)"),
    DataSource(
        name="humaneval", kind="humaneval",
        hub_id="openai/openai_humaneval", hub_revision=HUMANEVAL_HUB_COMMIT, hub_config=None, split="test",
        mirror_path="humaneval/HumanEval.jsonl.gz",
        note="without a mirror the human-eval package's copy is read (byte-identical to the mirror file), "
             "not the hub"),
    DataSource(
        name="gsm8k", kind="gsm8k",
        hub_id="openai/gsm8k", hub_revision=GSM8K_HUB_COMMIT, hub_config="main", split="test",
        mirror_path="gsm8k/test.jsonl", note="1,319 rows"),
    DataSource(
        name="gsm8k_train", kind="gsm8k",
        hub_id="openai/gsm8k", hub_revision=GSM8K_HUB_COMMIT, hub_config="main", split="train",
        mirror_path="gsm8k/train.jsonl", note="7,473 rows"),
    DataSource(
        name="poem", kind="creative",
        hub_id="liziniu/GEM", hub_revision=GEM_REPO_COMMIT, hub_config=None, split="test",
        mirror_path="gem_creative_writing/poem_generation_test.parquet",
        hub_data_files="https://raw.githubusercontent.com/liziniu/GEM/{revision}/data/poem_generation/"
                       "test-00000-of-00001.parquet",
        hub_format="parquet", note="573 prompts (GitHub, the paper's repo)"),
    DataSource(
        name="story", kind="creative",
        hub_id="liziniu/GEM", hub_revision=GEM_REPO_COMMIT, hub_config=None, split="test",
        mirror_path="gem_creative_writing/story_generation_test.parquet",
        hub_data_files="https://raw.githubusercontent.com/liziniu/GEM/{revision}/data/story_generation/"
                       "test-00000-of-00001.parquet",
        hub_format="parquet", note="52,665 prompts; the paper's script uses the first 1,000"),
    DataSource(
        name="tinystories", kind="text",
        hub_id="roneneldan/TinyStories", hub_revision=UNPINNED, hub_config=None, split="train",
        mirror_path="tinystories/tinystories_sample.txt",
        note="pretraining text for the tiny base model of the real-data configs (not the paper's data); "
             "mirror: a 2 MiB sample of the train split, stories separated by <|endoftext|>"),
)}


def get_source(name: str, kind: str | None = None) -> DataSource:
    """The registered dataset `name`, checked to be of `kind` when given."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    source = DATASETS[name]
    if kind is not None and source.kind != kind:
        raise ValueError(f"dataset {name!r} is of kind {source.kind}, not {kind}")
    return source


def mirror_root(value: str | os.PathLike | None) -> Path | None:
    """The local mirror directory, or None to read from the hub.

    `value` is the config key `data_mirror`: a path, or "" for the hub. When it is None (the key is
    absent or null) the environment variable GEMSFT_DATA_MIRROR decides the same way. Relative paths
    are resolved against the current directory; a path that is not a directory is a FileNotFoundError."""
    origin = MIRROR_KEY
    if value is None:
        value, origin = os.environ.get(MIRROR_ENV), MIRROR_ENV
    if value is None or not str(value).strip():
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"{origin}={str(value)!r}: the data mirror {path} does not exist "
                                "or is not a directory")
    return path


def mirror_file(mirror: Path, source: DataSource) -> Path:
    path = Path(mirror) / source.mirror_path
    if not path.is_file():
        raise FileNotFoundError(f"dataset {source.name!r}: {source.mirror_path} is missing from the data mirror {mirror}")
    return path
