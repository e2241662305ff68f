"""Multi-GPU launch (gemsft.train.launch): the job's `gpu` resource, the accelerate command, and a real
two-process torch.distributed run of SFT on CPU (gloo), which must train exactly what one process
with two gradient-accumulation steps trains (accelerate gives rank r the micro-batches r, r + 2, ...
of the same shuffled order)."""

from __future__ import annotations

import sys

import pytest
import torch

from gemsft import files
from gemsft.rule_script import job_gpus
from gemsft.train.launch import distributed_command, run

from test_sft import MESSAGES, TRAIN_CFG  # noqa: E402


def test_job_gpus_reads_the_rules_gpu_resource():
    assert job_gpus({}) == 0
    assert job_gpus({"gpu": 8, "mem_mb": 1000}) == 8
    assert job_gpus({"gpu": "2"}) == 2
    with pytest.raises(ValueError, match="resource 'gpu' must be a whole number of GPUs, got 'a100'"):
        job_gpus({"gpu": "a100"})
    with pytest.raises(ValueError, match="must not be negative"):
        job_gpus({"gpu": -1})


def test_distributed_command_is_accelerate_launch_of_this_module():
    command = distributed_command(8, "finetune", "/tmp/args.json")
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in command and "--num_processes=8" in command and "--num_machines=1" in command
    assert command[-4:] == ["-m", "gemsft.train.launch", "finetune", "/tmp/args.json"]
    with pytest.raises(ValueError, match="at least 2 processes"):
        distributed_command(1, "finetune", "/tmp/args.json")


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="unknown launch task 'pretrain'"):
        run("pretrain", {}, processes=1)


def test_two_process_sft_equals_one_process_with_gradient_accumulation(tmp_path, base_dir):
    # Answers of different lengths, so micro-batches differ in padding and token counts.
    rows = [{"id": f"r{i}", "messages": [MESSAGES[0], {"role": "assistant", "content": "yes " * (i % 5 + 1)}]}
            for i in range(16)]
    files.write_jsonl(tmp_path / "sft.jsonl", rows)
    cfg = {**TRAIN_CFG, "per_device_batch_size": 2, "epochs": 1}
    common = {"base_dir": str(base_dir), "data_path": str(tmp_path / "sft.jsonl"), "objective_name": "gem",
              "beta": 0.7, "seed": 3}

    def finetune(name, processes, accumulation):
        run("finetune", {**common, "out_dir": str(tmp_path / name), "checkpoint_dir": str(tmp_path / f"{name}.ckpt"),
                         "metrics_path": str(tmp_path / f"{name}.json"),
                         "cfg": {**cfg, "gradient_accumulation_steps": accumulation}}, processes=processes)
        return files.read_json(tmp_path / f"{name}.json")

    distributed, accumulated = finetune("ddp", 2, 1), finetune("ga", 1, 2)
    assert distributed["global_steps"] == accumulated["global_steps"] == 4  # 16 rows / (2 x 2)
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(tmp_path / "ddp")
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "ga")
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    assert any(not torch.equal(x, y) for x, y in zip(a.parameters(), base.parameters()))
    for x, y in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)
