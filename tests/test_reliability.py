"""Interrupted runs and determinism.

- SFT killed with SIGKILL in the middle of a Snakemake run resumes from its last checkpoint when the
  same command is run again (after `snakemake --unlock`, since Snakemake keeps the killed run's
  lock), and ends with the weights of an uninterrupted run.
- Two runs of the same config (config/smoke.yaml: every stage of the embedded default, shrunk), each
  in a fresh copy of the project, give byte-identical results/metrics.csv on CPU.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
import torch

from conftest import SNAKEMAKE, copy_project, run_snakemake

TARGET = "results/sft/tiny/ce/beta-na/seed-1234"
# Short SFT with a checkpoint every 4 steps; steps 5-12 run after the first checkpoint.
OVERLAY = "train:\n  max_steps: 12\n  save_steps: 4\n  save_total_limit: 3\n"


def project_with_base(pipeline_run, dest):
    """A fresh project holding the session run's world and base model (copied with their times, so
    Snakemake sees them as up to date and only the SFT job runs)."""
    project = copy_project(dest)
    for part in ("results/data", "results/base"):
        shutil.copytree(pipeline_run / part, project / part)
    (project / "config/short.yaml").write_text(OVERLAY)
    return project


def command(project):
    # The target first: --configfile takes every argument after it.
    return [SNAKEMAKE, f"{TARGET}/model", "--profile", "profiles/local", "--cores", "1", "--configfile",
            "config/short.yaml"]


@pytest.mark.slow
def test_sigkill_during_training_then_the_same_command_resumes_and_matches(pipeline_run, tmp_path):
    reference = project_with_base(pipeline_run, tmp_path / "uninterrupted")
    subprocess.run(command(reference), cwd=reference, check=True, capture_output=True)

    project = project_with_base(pipeline_run, tmp_path / "killed")
    checkpoint = project / "results/checkpoints/sft/tiny/ce/beta-na/seed-1234/checkpoint-4/trainer_state.json"
    proc = subprocess.Popen(command(project), cwd=project, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and the training job with it
    proc.wait()
    assert checkpoint.is_file(), "no checkpoint appeared before the run ended"
    assert not (project / TARGET / "train_metrics.json").exists(), "the run finished before the kill"

    # Snakemake cannot tell a killed run's lock from a live one: it is released by hand, then the
    # same command runs again.
    subprocess.run([SNAKEMAKE, "--unlock", "--configfile", "config/short.yaml"], cwd=project, check=True,
                   capture_output=True)
    rerun = subprocess.run(command(project), cwd=project, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    from gemsft import files

    metrics = files.read_json(project / TARGET / "train_metrics.json")
    assert metrics["resumed_from"] in ("checkpoint-4", "checkpoint-8") and metrics["global_steps"] == 12
    from transformers import AutoModelForCausalLM

    resumed = AutoModelForCausalLM.from_pretrained(project / TARGET / "model")
    full = AutoModelForCausalLM.from_pretrained(reference / TARGET / "model")
    for (name, a), b in zip(resumed.named_parameters(), full.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


@pytest.mark.slow
def test_two_runs_with_the_same_seeds_give_byte_identical_metrics(tmp_path):
    tables = []
    for name in ("first", "second"):
        project = copy_project(tmp_path / name)
        run_snakemake(project, "results/metrics.csv", "--profile", "profiles/local", "--cores", "2",
                      "--configfile", "config/smoke.yaml")
        tables.append(project / "results/metrics.csv")
    first, second = (path.read_bytes() for path in tables)
    import pandas as pd

    metrics = pd.read_csv(tables[0])
    # Every stage of every run is in the table (nothing to compare would make the check vacuous).
    assert set(metrics["objective"]) == {"base", "gem"}
    assert set(metrics["task"]) >= {"chat", "code", "humaneval", "math", "knowledge", "sft_test", "parameters"}
    assert {"win_rate", "sbert_diversity", "pass_at_k", "majority_accuracy", "entropy"} <= set(metrics["metric"])
    if first != second:
        other = pd.read_csv(tables[1])
        differ = metrics.compare(other) if metrics.shape == other.shape else f"shapes {metrics.shape} vs {other.shape}"
        raise AssertionError(f"results/metrics.csv differs between two runs:\n{differ}")
