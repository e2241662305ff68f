"""Multi-GPU launch (gemsft.train.launch): the job's `gpu` resource, the accelerate command, the job's
CPU threads split among the launched processes, and a real two-process torch.distributed run of SFT
on CPU (gloo), which must train exactly what one process with two gradient-accumulation steps trains
(accelerate gives rank r the micro-batches r, r + 2, ... of the same shuffled order). Also a training
job's disk: with train.keep_checkpoints false a finished run deletes its checkpoints, and a run that
stops before its outputs are written keeps them."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gemsft import files
from gemsft.rule_script import job_gpus
from gemsft.train import launch
from gemsft.train.launch import distributed_command, job_threads, run, threads_per_process

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
    assert "--num_cpu_threads_per_process=1" in command
    assert "--num_cpu_threads_per_process=4" in distributed_command(8, "finetune", "/tmp/args.json", threads=4)
    with pytest.raises(ValueError, match="at least 2 processes"):
        distributed_command(1, "finetune", "/tmp/args.json")


def test_each_process_gets_its_share_of_the_jobs_threads(monkeypatch):
    assert threads_per_process(32, 8) == 4  # profiles/slurm's train job: 32 CPUs, 8 GPUs
    assert threads_per_process(7, 2) == 3 and threads_per_process(2, 8) == 1 and threads_per_process(5, 1) == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "12")  # as gemsft.rule_script sets it to the rule's threads
    assert job_threads() == 12
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert job_threads() == len(os.sched_getaffinity(0))


# Run by each launched process instead of the fine-tuning: what threads it was given.
THREADS_PROBE = """import json, os, sys, torch
rank = os.environ["RANK"]
seen = {"omp": os.environ.get("OMP_NUM_THREADS"), "mkl": os.environ.get("MKL_NUM_THREADS"),
        "torch": torch.get_num_threads(), "world": os.environ["WORLD_SIZE"]}
open(os.path.join(sys.argv[1], rank + ".json"), "w").write(json.dumps(seen))
"""


@pytest.mark.parametrize("threads, job_env, share", [(4, "1", 2), (None, "2", 1)])
def test_launched_processes_run_with_their_share_of_threads(tmp_path, monkeypatch, threads, job_env, share):
    """The real `accelerate launch` of `run`, with the fine-tuning swapped for a probe: each of the two
    processes sees OMP_NUM_THREADS and MKL_NUM_THREADS = its share, and torch uses that many threads
    (the job's threads: the argument, else the job's OMP_NUM_THREADS). Shares of at most 2, because
    torch uses no more threads than the machine's CPUs (2 here) whatever OMP_NUM_THREADS says."""
    probe = tmp_path / "probe.py"
    probe.write_text(THREADS_PROBE)
    command = launch.distributed_command
    monkeypatch.setattr(launch, "distributed_command",
                        lambda *args, **kwargs: command(*args, **kwargs)[:-4] + [str(probe), str(tmp_path)])
    monkeypatch.setenv("OMP_NUM_THREADS", job_env)
    monkeypatch.setenv("MKL_NUM_THREADS", job_env)
    run("finetune", {}, processes=2, threads=threads)
    seen = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    assert seen == [{"omp": str(share), "mkl": str(share), "torch": share, "world": "2"}] * 2


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="unknown launch task 'pretrain'"):
        run("pretrain", {}, processes=1)


# Tasks for the process-group test below, run through launch.TASKS like the fine-tuning.
def join_a_group_of_one(store: str, fail: bool = False) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    if fail:
        raise RuntimeError("the task failed")


def use_the_group(store: str) -> None:
    torch.distributed.barrier()


def test_a_task_leaves_the_group_it_joined_and_keeps_the_callers(tmp_path, monkeypatch):
    """A process group left up to interpreter exit can abort a finished rank (gloo threads; seen in CI
    as SIGABRT after training), so a task's group is destroyed when it ends, failed or not; a group the
    caller had before the task is the caller's and stays."""
    monkeypatch.setitem(launch.TASKS, "join", (__name__, "join_a_group_of_one"))
    monkeypatch.setitem(launch.TASKS, "use", (__name__, "use_the_group"))
    run("join", {"store": str(tmp_path / "a")}, processes=1)
    assert not torch.distributed.is_initialized()
    with pytest.raises(RuntimeError, match="the task failed"):
        run("join", {"store": str(tmp_path / "b"), "fail": True}, processes=1)
    assert not torch.distributed.is_initialized()
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'c'}", rank=0, world_size=1)
    try:
        run("use", {"store": str(tmp_path / "c")}, processes=1)
        assert torch.distributed.is_initialized()
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_sft_equals_one_process_with_gradient_accumulation(tmp_path, base_dir):
    # Answers of different lengths, so micro-batches differ in padding and token counts.
    rows = [{"id": f"r{i}", "messages": [MESSAGES[0], {"role": "assistant", "content": "yes " * (i % 5 + 1)}]}
            for i in range(16)]
    files.write_jsonl(tmp_path / "sft.jsonl", rows)
    cfg = {**TRAIN_CFG, "per_device_batch_size": 2, "epochs": 1}
    common = {"base_dir": str(base_dir), "data_path": str(tmp_path / "sft.jsonl"), "objective_name": "gem",
              "beta": 0.7, "seed": 3}

    def finetune(name, processes, accumulation, **extra):
        run("finetune", {**common, "out_dir": str(tmp_path / name), "checkpoint_dir": str(tmp_path / f"{name}.ckpt"),
                         "metrics_path": str(tmp_path / f"{name}.json"),
                         "cfg": {**cfg, "gradient_accumulation_steps": accumulation, **extra}}, processes=processes)
        return files.read_json(tmp_path / f"{name}.json")

    distributed, accumulated = finetune("ddp", 2, 1, keep_checkpoints=False), finetune("ga", 1, 2)
    assert distributed["global_steps"] == accumulated["global_steps"] == 4  # 16 rows / (2 x 2)
    # Rank 0 deleted the finished distributed run's checkpoints; without the key they stay.
    assert not (tmp_path / "ddp.ckpt").exists() and (tmp_path / "ga.ckpt" / "checkpoint-4").is_dir()
    assert_trained_alike(tmp_path / "ddp", tmp_path / "ga", base_dir, atol=1e-6)


def assert_trained_alike(a_dir, b_dir, base_dir, atol: float) -> None:
    """Two saved models that training moved away from the base, with the same weights within atol."""
    from transformers import AutoModelForCausalLM

    a, b, base = (AutoModelForCausalLM.from_pretrained(d) for d in (a_dir, b_dir, base_dir))
    assert any(not torch.equal(x, y) for x, y in zip(a.parameters(), base.parameters()))
    for x, y in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


def test_checkpoints_go_only_after_the_outputs_are_written(tmp_path, base_dir, monkeypatch):
    """keep_checkpoints false: a run that fails while writing its outputs keeps its checkpoints, the
    rerun resumes from them, and once its model and metrics exist the checkpoint directory is gone."""
    from gemsft.train import sft

    files.write_jsonl(tmp_path / "sft.jsonl", [{"id": f"r{i}", "messages": MESSAGES} for i in range(8)])
    ckpt = tmp_path / "ckpt"
    args = {"base_dir": base_dir, "data_path": tmp_path / "sft.jsonl", "out_dir": tmp_path / "model",
            "checkpoint_dir": ckpt, "metrics_path": tmp_path / "metrics.json", "objective_name": "ce",
            "beta": None, "seed": 0, "cfg": {**TRAIN_CFG, "epochs": 1, "keep_checkpoints": False}}

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sft.files, "write_json", disk_full)  # the metrics, written after the model
    with pytest.raises(OSError, match="disk full"):
        sft.finetune(**args)
    monkeypatch.undo()
    assert (ckpt / "checkpoint-2" / "trainer_state.json").is_file()  # 8 rows / batch 4: the final step
    shutil.rmtree(tmp_path / "model")  # as Snakemake removes a failed job's outputs

    metrics = sft.finetune(**args)
    assert metrics["resumed_from"] == "checkpoint-2" and files.read_json(tmp_path / "metrics.json") == metrics
    assert (tmp_path / "model" / "config.json").is_file() and not ckpt.exists()


# One launch per process: DeepSpeed leaves its process group and accelerator state behind.
LAUNCH = "import json, sys; from gemsft.train.launch import run; run('finetune', json.loads(sys.argv[1]), int(sys.argv[2]))"


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
@pytest.mark.parametrize("processes", [1, 2])
def test_zero2_through_the_launcher_trains_what_the_plain_run_trains(tmp_path, base_dir, processes):
    """DeepSpeed ZeRO-2 (config/deepspeed/zero2.json, the paper config's) on its CPU accelerator, through
    the pipeline's launcher: one process (a process group of one), or two (gloo), where ZeRO-2 shards
    the optimizer state and gradients. In float32 it must train the weights the plain run (DDP for two
    processes) trains."""
    rows = [{"id": f"r{i}", "messages": [MESSAGES[0], {"role": "assistant", "content": "yes " * (i % 5 + 1)}]}
            for i in range(16)]
    files.write_jsonl(tmp_path / "sft.jsonl", rows)
    common = {"base_dir": str(base_dir), "data_path": str(tmp_path / "sft.jsonl"), "objective_name": "gem",
              "beta": 0.7, "seed": 3}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(launch_repo() / "workflow")}

    def finetune(name, deepspeed):
        cfg = {**TRAIN_CFG, "per_device_batch_size": 2, "epochs": 1, "deepspeed": deepspeed}
        kwargs = {**common, "out_dir": str(tmp_path / name), "checkpoint_dir": str(tmp_path / f"{name}.ckpt"),
                  "metrics_path": str(tmp_path / f"{name}.json"), "cfg": cfg}
        result = subprocess.run([sys.executable, "-c", LAUNCH, json.dumps(kwargs), str(processes)], env=env,
                                cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]

    finetune("zero2", str(launch_repo() / "config/deepspeed/zero2.json"))
    finetune("plain", None)
    # The engine ran, not a silent fallback: ZeRO's checkpoints hold the optimizer state as one
    # partition per rank (a plain run's hold one optimizer.pt).
    partitions = sorted(p.name for p in (tmp_path / "zero2.ckpt").rglob("*optim_states.pt"))
    last = sorted((tmp_path / "zero2.ckpt").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    assert len(list(last.rglob("*optim_states.pt"))) == processes, partitions
    assert not list((tmp_path / "zero2.ckpt").rglob("optimizer.pt")) and list((tmp_path / "plain.ckpt").rglob("optimizer.pt"))
    assert_trained_alike(tmp_path / "zero2", tmp_path / "plain", base_dir, atol=1e-5)
    assert files.read_json(tmp_path / "zero2.json")["global_steps"] == files.read_json(tmp_path / "plain.json")["global_steps"]


def launch_repo() -> Path:
    return Path(__file__).resolve().parents[1]
