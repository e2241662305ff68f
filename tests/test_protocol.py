"""config/paper.yaml against the paper's settings (../shared/PROTOCOL.md), and the paper-config plan.

A drift in the paper config (a changed learning rate, a missing beta) fails here, with the setting
and the paper's value in the message. Also the pre-trained row's protocol (Appendix F.1, Table 2):
the base model answers the first 100 chat prompts after 5 worked examples, while the embedded
default keeps its 0-shot prompts and samples.
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
    ("sampling", "base"): {"shots": 5, "prompts": 100},  # F.1 / Table 2: the pre-trained row, 5-shot
    # The official code saves no checkpoints: one resumable checkpoint while a run trains, none after.
    ("train", "save_total_limit"): 1,
    ("train", "keep_checkpoints"): False,
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
    from gemsft.report.registry import TABLE_NAMES

    assert counts["sample_base"] == 1 and counts["figure"] == 7 and counts["table"] == len(TABLE_NAMES)
    assert counts["claims"] == 1


# --------------------------------------------------------------------- the pre-trained row (F.1)

def test_default_config_samples_the_base_model_zero_shot():
    """The schema's defaults, filled in at load time: no worked examples, the chat task's prompts."""
    from gemsft.config import validate_config

    config = merged()
    validate_config(config, str(REPO / "config/schema/config.schema.yaml"))
    assert config["sampling"]["base"] == {"shots": 0, "prompts": None}
    assert config["train"]["keep_checkpoints"] is False


def test_train_fused_loss_is_true_false_or_auto_by_default():
    """The loss is fused where measured not slower unless the config says (test_bad_input: "maybe")."""
    from gemsft.config import validate_config

    schema = str(REPO / "config/schema/config.schema.yaml")
    config = merged()
    validate_config(config, schema)
    assert config["train"]["fused_loss"] == "auto"
    for setting in (True, False, "auto"):
        config["train"]["fused_loss"] = setting
        validate_config(config, schema)
        assert config["train"]["fused_loss"] == setting


def base_data(tmp_path, prompts=120):
    """A data directory: `prompts` chat prompts, and SFT conversations of which the second is two turns."""
    from gemsft import files
    from gemsft.data.world import FILES

    files.write_jsonl(tmp_path / FILES["eval_chat"],
                      [{"id": f"c{i}", "prompt": f"Question {i}?"} for i in range(prompts)])
    sft = [{"id": f"s{i}", "messages": [{"role": "user", "content": f"Ask {i}"},
                                        {"role": "assistant", "content": f"Answer {i}."}]} for i in range(7)]
    sft[1]["messages"] += [{"role": "user", "content": "And?"}, {"role": "assistant", "content": "More."}]
    files.write_jsonl(tmp_path / FILES["sft_train"], sft)
    return tmp_path


def test_paper_config_plans_100_prompts_after_5_worked_examples(tmp_path, paper):
    from gemsft.sample.base_prompt import base_chat_settings, base_config, base_requests

    data = base_data(tmp_path)
    settings = base_chat_settings(paper["sampling"])
    assert settings["prompts"] == 100 and settings["n"] == 32  # the base row's prompts; chat's n
    [request] = base_requests(data, {"chat": settings}, ["chat"], base_config(paper["sampling"])["shots"]).values()
    assert [p["id"] for p in request.prompts] == [f"c{i}" for i in range(100)]
    assert request.prompt_format == "raw" and request.spec.n == 32
    # Five single-turn SFT conversations (s1 has two turns, so it is skipped), then the prompt's frame.
    shots = "".join(f"Q: Ask {i}\nA: Answer {i}.\n\n" for i in (0, 2, 3, 4, 5))
    assert request.prompts[7]["prompt"] == shots + "Q: Question 7?\nA:"


def test_too_few_worked_examples_is_an_error(tmp_path):
    from gemsft.sample.base_prompt import few_shot_examples

    data = base_data(tmp_path)
    assert [e["id"] for e in few_shot_examples(data, 6)] == ["s0", "s2", "s3", "s4", "s5", "s6"]
    with pytest.raises(ValueError, match="sampling.base.shots is 7, but only 6 conversations"):
        few_shot_examples(data, 7)


def test_the_diversity_stage_reads_the_base_rows_planned_prompts(tmp_path, paper):
    """`base_sampling` is the plan the base model's samples file is checked against: its 100 prompts."""
    from gemsft import files
    from gemsft.data.world import FILES
    from gemsft.sample.base_prompt import base_sampling
    from gemsft.sample.plan import read_planned_samples

    data = base_data(tmp_path)
    rows = [{"prompt_id": f"c{i}", "sample_index": j, "text": "x", "num_tokens": 1, "finish_reason": "stop"}
            for i in range(100) for j in range(32)]
    files.write_jsonl(tmp_path / "chat.jsonl", rows)
    records = files.read_jsonl(data / FILES["eval_chat"])
    planned, read = read_planned_samples(tmp_path / "chat.jsonl", data, base_sampling(paper["sampling"]), "chat",
                                         records)
    assert len(planned) == 100 and read == rows
    with pytest.raises(ValueError, match="has 0 of its 32 samples"):  # the chat task's plan: all 120 prompts
        read_planned_samples(tmp_path / "chat.jsonl", data, paper["sampling"], "chat", records)


def test_the_next_question_is_cut_off():
    from gemsft.sample.base_prompt import cut_at_next_turn

    rows = [{"text": "Paris.\n\nQ: And Spain?\nA: Madrid.", "num_tokens": 12, "finish_reason": "length"},
            {"text": "Rome, the capital.", "num_tokens": 6, "finish_reason": "stop"},
            {"text": "Q&A: none", "num_tokens": 5, "finish_reason": "length"}]
    assert cut_at_next_turn(rows) == [{"text": "Paris.", "num_tokens": 12, "finish_reason": "stop"}, rows[1], rows[2]]


def test_zero_shot_base_samples_are_the_qa_formats(tmp_path, base_dir):
    """The embedded default's base samples are unchanged: with 0 shots, the base requests (framed
    prompts in the raw format) give exactly the rows of the "qa" format; with shots, other prompts."""
    from gemsft.sample.base_prompt import base_requests
    from gemsft.sample.generate import encode_prompts, generate, generate_requests
    from gemsft.sample.plan import SamplingSpec, sample_requests

    data = base_data(tmp_path, prompts=3)
    spec = {"n": 2, "max_tokens": 8, "temperature": 0.6, "top_k": 50, "top_p": 0.9, "seed": 42}
    settings = {**spec, "prompts": None}
    [request] = base_requests(data, {"chat": settings}, ["chat"], 0).values()
    [old] = sample_requests(data, {"chat": settings}, ["chat"], "qa").values()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    assert encode_prompts(tokenizer, [p["prompt"] for p in request.prompts], "raw") == encode_prompts(
        tokenizer, [p["prompt"] for p in old.prompts], "qa")
    rows = generate_requests(base_dir, [request], backend="hf")[0]
    assert rows and rows == generate(base_dir, old.prompts, SamplingSpec(**spec), backend="hf", prompt_format="qa")
    [shot] = base_requests(data, {"chat": settings}, ["chat"], 2).values()
    assert all(p["prompt"].startswith("Q: Ask 0\nA: Answer 0.\n\nQ: Ask 2\n") for p in shot.prompts)


def test_base_model_is_asked_the_bare_math_question_greedy_and_sampled(tmp_path):
    """The base model's math (calibration.md): each question in the pretraining frame, without the SFT
    prompt's instructions around it, once greedy and n times sampled; the first `prompts` questions."""
    from gemsft import files
    from gemsft.data.world import FILES
    from gemsft.sample.base_prompt import base_requests

    data = base_data(tmp_path, prompts=2)
    files.write_jsonl(tmp_path / FILES["eval_math"],
                      [{"id": f"m{i}", "prompt": f"Solve this. Question: {i} + 1?", "question": f"{i} + 1?",
                        "answer": i + 1} for i in range(4)])
    spec = {"n": 3, "max_tokens": 8, "temperature": 0.6, "top_k": 50, "top_p": 0.9, "seed": 42}
    requests = base_requests(data, {"math": {**spec, "prompts": 3}}, ["math", "math_greedy"], 0)
    assert [p["prompt"] for p in requests["math"].prompts] == [f"Q: {i} + 1?\nA:" for i in range(3)]
    assert requests["math"].prompts == requests["math_greedy"].prompts
    assert requests["math"].spec.n == 3 and requests["math_greedy"].spec.greedy and requests["math"].prompt_format == "raw"
