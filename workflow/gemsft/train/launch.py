"""Running a rule's work on every GPU its job was given.

A rule's `gpu` resource (profiles/slurm sets it per rule) is the number of GPUs of the job. Training
with more than one runs under `accelerate launch` (one process per GPU, torch.distributed; the HF
Trainer picks up DeepSpeed from `train.deepspeed`), re-entering this module with the job's arguments
in a JSON file. Sampling uses the same number as vLLM's tensor_parallel_size (`gemsft.sample.generate`).

The job's CPU threads are shared among the processes. gemsft.rule_script sets OMP_NUM_THREADS to the
rule's threads, and `accelerate launch` gives every process its own OMP_NUM_THREADS, which defaults
to the launcher's. So without a split, 8 ranks of a 32-thread job would each start 32 threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def job_threads() -> int:
    """The job's CPU threads: OMP_NUM_THREADS as gemsft.rule_script set it to the rule's threads, else
    the CPUs this process may run on."""
    try:
        threads = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        threads = 0
    if threads >= 1:
        return threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_process(threads: int, processes: int) -> int:
    """Each process's share of the job's threads, at least one."""
    return max(1, threads // max(1, processes))


def distributed_command(processes: int, task: str, args_json: str | os.PathLike, threads: int = 1) -> list[str]:
    """`accelerate launch` of `python -m gemsft.train.launch <task> <args_json>` on `processes` processes of
    one machine (torch.distributed.run underneath; rank and world size come in the environment), each
    with `threads` CPU threads (accelerate sets each process's OMP_NUM_THREADS to it)."""
    if processes < 2:
        raise ValueError(f"a distributed launch needs at least 2 processes, got {processes}")
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", f"--num_processes={processes}",
            "--num_machines=1", "--machine_rank=0", "--dynamo_backend=no", "--mixed_precision=no",
            f"--num_cpu_threads_per_process={threads}",
            "-m", "gemsft.train.launch", task, str(args_json)]


TASKS = {"finetune": ("gemsft.train.sft", "finetune")}


def run_task(task: str, kwargs: dict) -> None:
    """Run `task(**kwargs)`, then leave the process group the task joined (`leave_process_group`)."""
    if task not in TASKS:
        raise ValueError(f"unknown launch task {task!r}; known: {', '.join(TASKS)}")
    module, name = TASKS[task]
    joined_before = _in_process_group()
    finished = False
    try:
        getattr(__import__(module, fromlist=[name]), name)(**kwargs)
        finished = True
    finally:
        if not joined_before:
            leave_process_group(finished)


def _in_process_group() -> bool:
    if "torch" not in sys.modules:  # torch.distributed is only ever initialised by a task that imported torch
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def leave_process_group(finished: bool = True) -> None:
    """Destroy the torch.distributed process group, if one is up, while the interpreter is whole.

    Left to interpreter exit, gloo's worker threads can outlive the objects they hold and the process
    aborts after its work is done ("terminate called without an active exception", SIGABRT; pytorch
    issue 190489), which fails a finished job. A rank that finished waits at a barrier first, so none
    tears its group down while another still talks to it; one that failed leaves at once."""
    if not _in_process_group():
        return
    import torch.distributed as dist

    if finished and dist.get_world_size() > 1:
        dist.barrier()
    dist.destroy_process_group()


# torch.distributed's rendezvous variables, which a launcher sets for each of its processes.
DISTRIBUTED_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# A process group of one: rank 0 of 1, its store on a port the system picks when it binds (port 0),
# so jobs side by side never race for one (no other process has to find it).
SINGLE_PROCESS_GROUP_ENV = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                            "MASTER_PORT": "0"}


def _uses_deepspeed(kwargs: dict) -> bool:
    return bool((kwargs.get("cfg") or {}).get("deepspeed"))


def run(task: str, kwargs: dict, processes: int, threads: int | None = None) -> None:
    """Run `task(**kwargs)` here (processes <= 1) or on `processes` processes, one per GPU, sharing
    `threads` CPU threads (default: the job's, `job_threads`).

    DeepSpeed (`cfg.deepspeed`) always runs in a process group: here, unlaunched, it would look for
    MPI to find one (and stop on `import mpi4py`), so a run in this process gets a group of one."""
    if processes <= 1:
        if _uses_deepspeed(kwargs) and not all(os.environ.get(name) for name in DISTRIBUTED_ENV):
            os.environ.update(SINGLE_PROCESS_GROUP_ENV)
        run_task(task, kwargs)
        return
    per_process = threads_per_process(threads or job_threads(), processes)
    # MKL_NUM_THREADS too: the launcher passes it through unchanged (rule_script set it to the job's).
    env = {**os.environ, "OMP_NUM_THREADS": str(per_process), "MKL_NUM_THREADS": str(per_process)}
    with tempfile.TemporaryDirectory(prefix="gemsft-launch-") as tmp:
        args_json = Path(tmp) / "args.json"
        args_json.write_text(json.dumps(kwargs, default=str))
        result = subprocess.run(distributed_command(processes, task, args_json, per_process), env=env)
    if result.returncode != 0:
        raise SystemExit(f"distributed {task} on {processes} processes failed (exit code {result.returncode}); "
                         "see the ranks' output above")


def main(argv: list[str]) -> None:
    task, args_json = argv
    run_task(task, json.loads(Path(args_json).read_text()))


if __name__ == "__main__":
    main(sys.argv[1:])
