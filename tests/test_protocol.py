"""config/paper.yaml against the paper's settings (../shared/PROTOCOL.md), and the paper-config plan.

A drift in the paper config (a changed learning rate, a missing beta) fails here, with the setting
and the paper's value in the message.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO, copy_project, planned_jobs, run_snakemake

# (section, key) -> the paper's value (Section 6, Appendix E, the official scripts).
PAPER_SETTINGS = {
    ("model", "pretrained"): "meta-llama/Llama-3.1-8B",
    ("model", "chat_template_from"): "meta-llama/Llama-3.1-8B-Instruct",
    ("train", "objectives"): ["ce", "ce_wd", "neft", "ce_entropy", "gem", "gem_log_sigmoid"],
    ("train", "gem_betas"): [1.0, 0.9, 0.8, 0.7, 0.6],
    ("train", "seeds"): [1234],
    ("train", "epochs"): 3,
    ("train", "learning_rate"): 2e-5,
    ("train", "lr_scheduler"): "cosine",
    ("train", "warmup_ratio"): 0.03,
    ("train", "adam_beta2"): 0.95,
    ("train", "max_grad_norm"): 1.0,
    ("train", "max_length"): 2048,
    ("train", "length_policy"): "drop",
    ("train", "bf16"): True,
    ("train", "gradient_checkpointing"): True,
    ("train", "deepspeed"): "config/deepspeed/zero2.json",
    ("sampling", "backend"): "vllm",
    ("sampling", "temperature"): 0.6,
    ("sampling", "top_k"): 50,
    ("sampling", "top_p"): 0.9,
    ("sampling", "seed"): 42,
    ("reward_model", "pretrained"): "sfairXC/FsfairX-LLaMA3-RM-v0.1",
    ("evaluation", "bon_n"): [1, 2, 4, 8, 16, 32],
    ("evaluation", "pass_k"): [1, 2, 5, 10, 20, 50, 100, 200],
    ("evaluation", "compat"): None,
}
SAMPLES_PER_PROMPT = {"chat": 32, "humaneval": 200, "math": 16}
GLOBAL_BATCH, GPUS = 128, 8  # the paper's global batch; 8 GPUs per training job


def merged(*names: str) -> dict:
    """The config Snakemake sees: config.yaml, then each --configfile on top (nested keys merged)."""
    def update(base: dict, over: dict) -> dict:
        for key, value in over.items():
            base[key] = update(base.get(key, {}), value) if isinstance(value, dict) and isinstance(
                base.get(key), dict) else copy.deepcopy(value)
        return base

    config: dict = {}
    for name in ("config.yaml", *names):
        update(config, yaml.safe_load((REPO / "config" / name).read_text()))
    return config


@pytest.fixture(scope="module")
def paper() -> dict:
    from gemsft.config import validate_config

    config = merged("paper.yaml")
    validate_config(config, str(REPO / "config/schema/config.schema.yaml"))
    return config


@pytest.mark.parametrize("setting", sorted(PAPER_SETTINGS), ids=lambda s: ".".join(s))
def test_paper_config_matches_the_paper(paper, setting):
    section, key = setting
    assert paper[section][key] == PAPER_SETTINGS[setting], f"{section}.{key}"


def test_paper_config_samples_and_batch(paper):
    for task, n in SAMPLES_PER_PROMPT.items():
        spec = paper["sampling"]["tasks"][task]
        assert spec["n"] == n and spec["prompts"] is None, task  # every prompt, the paper's n
    assert paper["sampling"]["tasks"]["code"] is None  # the embedded world's code tasks
    train = paper["train"]
    assert train["per_device_batch_size"] * train["gradient_accumulation_steps"] * GPUS == GLOBAL_BATCH


def test_paper_config_reads_the_papers_datasets(paper):
    from gemsft.data.sources import get_source

    assert paper["data"]["source"] == "real" and paper["data_mirror"] == ""  # the hub
    real = paper["data"]["real"]
    assert (real["sft"]["train"], real["sft"]["test"]) == ("ultrafeedback_train", "ultrafeedback_test")
    assert (get_source("ultrafeedback_train").hub_id, get_source("ultrafeedback_train").split) == (
        "HuggingFaceH4/ultrafeedback_binarized", "train_sft")
    assert real["chat"]["dataset"] == "alpaca_eval" and real["math"]["dataset"] == "gsm8k"
    assert all(section.get("limit") is None for section in real.values())  # every row
    assert paper["evaluation"]["leaderboard_limit"] is None
    assert [task for task, _ in paper["report"]["knowledge_tasks"]] == [
        "arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k"]


def test_scaling_config_uses_lora_rank_16():
    config = merged("paper.yaml", "scaling.yaml")
    assert config["train"]["lora"]["enabled"] and config["train"]["lora"]["r"] == 16
    assert config["train"]["learning_rate"] == 2e-5  # otherwise the paper's settings


def test_paper_config_plans_every_job_without_a_gpu(tmp_path, paper):
    project = copy_project(tmp_path)
    result = run_snakemake(project, "-n", "--cores", "1", "--configfile", "config/paper.yaml")
    counts = planned_jobs(result)
    runs = 4 + 2 * 5  # four objectives without beta, two GEM variants at five betas
    assert counts["train"] == runs and "pretrain" not in counts and "reward_model" not in counts
    assert counts["real_data"] == 1 and counts["leaderboard_tasks"] == 1 and "world" not in counts
    assert counts["sample"] == runs and counts["evaluate_chat"] == runs and counts["evaluate_code"] == runs
    assert counts["evaluate_model"] == runs + 1  # and the base model
    # Figure 11 compares with the world's true next-token distribution; real data has none.
    assert counts["sample_base"] == 1 and counts["figure"] == 6 and counts["table"] == 7
