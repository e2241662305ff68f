"""Running at scale: profiles/slurm and a real SLURM run.

- The profiles name every rule of the workflow, give GPUs to exactly the GPU rules of the paper tier
  and keep cpus_per_task equal to the rule's threads; profiles/slurm-test is the same list without GPUs.
- `snakemake -n --profile profiles/slurm` plans the whole DAG with no SLURM command on PATH.
- Cluster faults, injected into the copied project's `world` script: a job killed on its first
  attempt is resubmitted (the profile's `retries: 1`) and the DAG completes; a job cancelled with
  `scancel` while writing its output leaves neither the output nor its temporary name, and
  Snakemake plans the job again.
- A real single-node SLURM cluster (tests/slurm_cluster.py: Debian's slurm-wlm and munge, installed
  when missing, so the test needs root) runs `results/data` and one figure through
  `--profile profiles/slurm-test`; the test checks the outputs and that both jobs went through
  sbatch: SLURM job ids in Snakemake's output, their logs in .snakemake/slurm_logs/, and
  `scontrol show job` of each id saying COMPLETED on the test node.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gemsft.data.world import FILES as WORLD_FILES

from conftest import REPO, SNAKEMAKE, copy_project
from slurm_cluster import local_slurm_cluster, slurm_processes

pytestmark = pytest.mark.slow

# GPUs per job in the paper tier (8B model); `pretrain` only runs when no pretrained model is given.
GPU_RULES = {"train": 8, "sample": 1, "sample_base": 1, "reward_model": 1, "evaluate_model": 1,
             "evaluate_chat": 1, "pretrain": 1, "alpaca_eval": 4}
CPU_RULES = {"world", "real_data", "leaderboard_tasks", "evaluate_code", "evaluate_math", "evaluate_diversity", "metrics_table", "summary",
             "claims", "comparison", "table", "figure"}
# Rules with no action: Snakemake runs them in the main process, never as SLURM jobs.
TARGET_RULES = {"all", "trained_models"}
SLURM_COMMANDS = {"sbatch", "srun", "salloc", "squeue", "sinfo", "sacct", "sacctmgr", "scontrol", "scancel",
                  "sshare", "sstat"}
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def load_profile(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


def workflow_rules() -> set[str]:
    names = set()
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        names |= set(re.findall(r"^\s*rule (\w+):", path.read_text(), flags=re.M))  # also rules under an `if`
    return names - TARGET_RULES


def path_without_slurm(bin_dir: Path) -> str:
    """A PATH of links to every command on PATH except SLURM's, as on a machine without SLURM."""
    bin_dir.mkdir()
    for directory in [str(Path(sys.executable).parent), *os.environ.get("PATH", "").split(os.pathsep)]:
        for command in Path(directory).glob("*") if Path(directory).is_dir() else []:
            link = bin_dir / command.name
            if command.name not in SLURM_COMMANDS and not link.exists() and os.access(command, os.X_OK):
                link.symlink_to(command)
    return str(bin_dir)


def snakemake_env(**extra: str) -> dict[str, str]:
    """The test's environment without SLURM job variables (a test run inside a SLURM job)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    return {**env, **extra}


def test_profiles_cover_every_rule():
    rules = workflow_rules()
    assert rules == set(GPU_RULES) | CPU_RULES, "a rule was added or renamed: size it in profiles/slurm*"
    slurm, test = load_profile("slurm"), load_profile("slurm-test")
    local = load_profile("local")
    assert slurm["executor"] == test["executor"] == "slurm"
    for key in ("retries", "rerun-incomplete"):  # the fault tests below exercise the real profile's settings
        assert test[key] == slurm[key], key
    defaults = slurm["default-resources"]
    assert "EDIT_ME" in defaults["slurm_account"] and "EDIT_ME" in defaults["slurm_partition"]
    for profile in (slurm, test):
        assert set(profile["set-threads"]) == set(profile["set-resources"]) == set(local["set-threads"]) == rules
    for rule in rules:
        resources = slurm["set-resources"][rule]
        assert resources.get("gpu", 0) == GPU_RULES.get(rule, 0), rule
        assert resources.get("nodes") == (1 if rule in GPU_RULES else None), f"{rule}: GPUs on one node"
        assert "gres" not in resources, f"{rule}: gpu and gres are exclusive in the plugin"
        assert resources["cpus_per_task"] == slurm["set-threads"][rule], rule
        assert resources["mem_mb"] > 0 and resources["runtime"] > 0, rule
        test_resources = test["set-resources"][rule]
        assert test_resources.get("gpu", 0) == 0, f"{rule}: the test cluster has no GPUs"
        assert ("gpu" in test_resources) == (rule in GPU_RULES), rule
        assert test_resources["cpus_per_task"] == test["set-threads"][rule] == local["set-threads"][rule], rule
    assert slurm["set-resources"]["train"]["tasks_per_gpu"] == 0  # one task holding all 8 GPUs


class _Resources(dict):
    """A job's resources as the plugin reads them: `.get` and attributes."""

    __getattr__ = dict.__getitem__


def test_train_job_asks_for_one_node_with_every_gpu():
    """The sbatch command the plugin builds for profiles/slurm's `train` job: 8 GPUs and 32 CPUs on
    one node, one task (the launcher starts one process per GPU with 4 threads each)."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    slurm = load_profile("slurm")
    resources = _Resources({**slurm["default-resources"], **slurm["set-resources"]["train"]})
    job = SimpleNamespace(resources=resources, threads=slurm["set-threads"]["train"])
    params = {"run_uuid": "id", "slurm_logfile": "log", "comment_str": "train", "account": "-A acct",
              "partition": "-p gpu", "workdir": None}
    command = (get_submit_command(job, params) + set_gres_string(job)).split()
    assert {"--nodes=1", "--gpus=8", "--cpus-per-task=32"} <= set(command), command
    assert not any(arg.startswith(("--ntasks", "--gres")) for arg in command), command


def test_slurm_profile_dry_run_needs_no_slurm(tmp_path):
    """The whole default DAG plans with profiles/slurm while no SLURM command can be found."""
    project = copy_project(tmp_path / "project")
    path = path_without_slurm(tmp_path / "bin")
    result = subprocess.run([SNAKEMAKE, "-n", "--profile", "profiles/slurm"], cwd=project, capture_output=True,
                            text=True, timeout=300, env=snakemake_env(PATH=path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "This was a dry-run" in output
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", output, flags=re.M))
    assert {"world", "train", "sample", "evaluate_model", "figure"} <= set(stats), stats
    assert re.search(r"rule train:.*?resources: [^\n]*\bgpu=8\b", output, flags=re.S)
    assert re.search(r"rule world:.*?resources: [^\n]*slurm_partition=EDIT_ME_partition", output, flags=re.S)
    assert not (project / "results").exists()
    assert not (project / ".snakemake" / "slurm_logs").exists()


# --------------------------------------------------------------------------------- cluster faults

# Code put in front of the copied project's `world` script. Each fault happens once: a marker file
# in the project directory (the jobs' working directory) records that it did.
KILLED_ON_FIRST_ATTEMPT = """import os, pathlib, signal
if not pathlib.Path("fault-injected").exists():
    pathlib.Path("fault-injected").touch()
    os.kill(os.getpid(), signal.SIGKILL)  # as a job on a failing node dies
"""
STALLED_BEFORE_RENAME = """import os, pathlib, time
_replace = os.replace
def _stall_then_replace(src, dst):
    if not pathlib.Path("fault-injected").exists():
        pathlib.Path("fault-injected").touch()
        time.sleep(600)  # the test cancels the job here, with its output under a temporary name
    _replace(src, dst)
os.replace = _stall_then_replace
"""


def project_with_fault(tmp_path, code: str) -> Path:
    project = copy_project(tmp_path)
    script = project / "workflow/scripts/build_world.py"
    script.write_text(code + script.read_text())
    return project


def job_state(slurm_id: str) -> str:
    shown = subprocess.run(["scontrol", "show", "job", slurm_id], capture_output=True, text=True, timeout=30,
                           env=snakemake_env()).stdout
    match = re.search(r"JobState=(\w+)", shown)
    assert match, shown
    return match.group(1)


def temporary_outputs(project: Path) -> list[Path]:
    """What gemsft.files.atomic_path is writing (or a killed writer left) for results/data."""
    return list((project / "results").glob(".data.*"))


def world_is_complete(project: Path) -> bool:
    return all((project / "results" / "data" / name).stat().st_size > 0 for name in WORLD_FILES.values())


def test_world_and_figure_run_through_slurm_and_a_failed_job_is_retried(tmp_path):
    """Two rules through sbatch; the world job is killed on its first attempt and the profile's
    `retries: 1` resubmits it, so the DAG completes."""
    project = project_with_fault(tmp_path, KILLED_ON_FIRST_ATTEMPT)
    targets = ["results/data", "figures/probability_transfer.png"]
    with local_slurm_cluster(cpus=2) as cluster:
        start = time.monotonic()
        result = subprocess.run([SNAKEMAKE, "--profile", "profiles/slurm-test", *targets], cwd=project,
                                capture_output=True, text=True, timeout=300, env=snakemake_env())
        seconds = time.monotonic() - start
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{output[-5000:]}\n{cluster.logs()}"
        submitted = SUBMITTED.findall(output)
        # Finished jobs stay in slurmctld's memory for MinJobAge (300 s): ask it about each one.
        jobs = {slurm_id: subprocess.run(["scontrol", "show", "job", slurm_id], capture_output=True, text=True,
                                         timeout=30, env=snakemake_env()).stdout for _, slurm_id, _ in submitted}
    print(f"snakemake through SLURM: {seconds:.1f} s",
          *(line for line in output.splitlines() if "SLURM jobid" in line), sep="\n")

    assert (project / "fault-injected").exists()
    assert len(submitted) == 3 and len({slurm_id for _, slurm_id, _ in submitted}) == 3, output[-5000:]
    runs = []
    for _, slurm_id, log in submitted:
        log = Path(log)
        assert log.name == f"{slurm_id}.log" and log.is_relative_to(project / ".snakemake" / "slurm_logs")
        assert log.is_file() and log.stat().st_size > 0, log
        rule = log.relative_to(project / ".snakemake" / "slurm_logs").parts[0].removeprefix("rule_")
        # The job step's Snakemake ran the rule inside the SLURM job.
        assert f"localrule {rule}:" in log.read_text(), log.read_text()[-2000:]
        shown = jobs[slurm_id]
        assert f"Partition={cluster.partition}" in shown and f"NodeList={cluster.node}" in shown, shown
        runs.append((rule, re.search(r"JobState=(\w+)", shown).group(1)))
    # The world job failed, was submitted again and completed (the figure does not need the world).
    assert sorted(runs) == [("figure", "COMPLETED"), ("world", "COMPLETED"), ("world", "FAILED")], runs
    assert runs.index(("world", "FAILED")) < runs.index(("world", "COMPLETED"))

    assert world_is_complete(project)
    for suffix in (".png", ".pdf", ".provenance.json"):
        assert (project / "figures" / f"probability_transfer{suffix}").stat().st_size > 0, suffix
    # The cluster stopped what it started (munged too, unless one was already running).
    assert {name for _, name in cluster.started} >= {"slurmctld", "slurmd"}
    assert cluster.alive() == [] and slurm_processes() == {}, (cluster.alive(), slurm_processes())


def test_a_cancelled_job_leaves_no_complete_looking_output(tmp_path):
    """scancel hits the world job while its output is written under a temporary name."""
    project = project_with_fault(tmp_path, STALLED_BEFORE_RENAME)
    # --retries 0: the cancellation must end the run, so that what it left can be inspected.
    command = [SNAKEMAKE, "--profile", "profiles/slurm-test", "--retries", "0", "results/data"]
    with local_slurm_cluster(cpus=2):
        proc = subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=snakemake_env())
        try:
            deadline = time.monotonic() + 120
            while not (project / "fault-injected").exists() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
            assert (project / "fault-injected").exists(), "the job never reached its output's rename"
            assert temporary_outputs(project) and not (project / "results" / "data").exists()
            slurm_ids = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30,
                                       env=snakemake_env()).stdout.split()
            assert len(slurm_ids) == 1, slurm_ids
            subprocess.run(["scancel", slurm_ids[0]], check=True, timeout=30, env=snakemake_env())
            output, _ = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode != 0, output[-5000:]
        assert job_state(slurm_ids[0]) == "CANCELLED"
        # Nothing is left that could pass for the output: the job removed its temporary directory on
        # SIGTERM (gemsft.rule_script), and Snakemake plans the job again.
        assert not (project / "results" / "data").exists() and temporary_outputs(project) == []
        dry = subprocess.run([SNAKEMAKE, "-n", "--profile", "profiles/slurm-test", "results/data"], cwd=project,
                             capture_output=True, text=True, timeout=120, env=snakemake_env())
    assert dry.returncode == 0 and re.search(r"^world\s+1$", dry.stdout, flags=re.M), dry.stdout[-3000:]
