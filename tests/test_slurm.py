"""Running at scale: profiles/slurm and a real SLURM run.

- The profiles name every rule of the workflow, give GPUs to exactly the GPU rules of the paper tier
  and keep cpus_per_task equal to the rule's threads; profiles/slurm-test is the same list without GPUs.
- `snakemake -n --profile profiles/slurm` plans the whole DAG with no SLURM command on PATH.
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

from gemsft.world import FILES as WORLD_FILES

from conftest import REPO, SNAKEMAKE, copy_project
from slurm_cluster import local_slurm_cluster, slurm_processes

pytestmark = pytest.mark.slow

# GPUs per job in the paper tier (8B model); `pretrain` only runs when no pretrained model is given.
GPU_RULES = {"train": 8, "sample": 1, "sample_base": 1, "reward_model": 1, "evaluate_model": 1,
             "evaluate_chat": 1, "pretrain": 1}
CPU_RULES = {"world", "real_data", "leaderboard_tasks", "evaluate_code", "evaluate_math", "evaluate_diversity", "metrics_table", "summary",
             "table", "figure"}
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
    defaults = slurm["default-resources"]
    assert "EDIT_ME" in defaults["slurm_account"] and "EDIT_ME" in defaults["slurm_partition"]
    for profile in (slurm, test):
        assert set(profile["set-threads"]) == set(profile["set-resources"]) == set(local["set-threads"]) == rules
    for rule in rules:
        resources = slurm["set-resources"][rule]
        assert resources.get("gpu", 0) == GPU_RULES.get(rule, 0), rule
        assert "gres" not in resources, f"{rule}: gpu and gres are exclusive in the plugin"
        assert resources["cpus_per_task"] == slurm["set-threads"][rule], rule
        assert resources["mem_mb"] > 0 and resources["runtime"] > 0, rule
        test_resources = test["set-resources"][rule]
        assert test_resources.get("gpu", 0) == 0, f"{rule}: the test cluster has no GPUs"
        assert ("gpu" in test_resources) == (rule in GPU_RULES), rule
        assert test_resources["cpus_per_task"] == test["set-threads"][rule] == local["set-threads"][rule], rule
    assert slurm["set-resources"]["train"]["tasks_per_gpu"] == 0  # one task holding all 8 GPUs


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


def test_world_and_figure_run_through_slurm(tmp_path):
    project = copy_project(tmp_path)
    targets = ["results/data", "figures/probability_transfer.png"]
    with local_slurm_cluster(cpus=2) as cluster:
        start = time.monotonic()
        result = subprocess.run([SNAKEMAKE, "--profile", "profiles/slurm-test", *targets], cwd=project,
                                capture_output=True, text=True, timeout=300, env=snakemake_env())
        seconds = time.monotonic() - start
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{output[-5000:]}\n{cluster.logs()}"
        submitted = SUBMITTED.findall(output)
        # Completed jobs stay in slurmctld's memory for MinJobAge (300 s): ask it about each one.
        jobs = {}
        for _, slurm_id, _ in submitted:
            shown = subprocess.run(["scontrol", "show", "job", slurm_id], capture_output=True, text=True,
                                   timeout=30, env=snakemake_env())
            jobs[slurm_id] = shown.stdout
    print(f"snakemake through SLURM: {seconds:.1f} s",
          *(line for line in output.splitlines() if "SLURM jobid" in line), sep="\n")

    assert len(submitted) == 2, output[-5000:]
    assert len({slurm_id for _, slurm_id, _ in submitted}) == 2
    rule_dirs = set()
    for _, slurm_id, log in submitted:
        log = Path(log)
        assert log.name == f"{slurm_id}.log" and log.is_relative_to(project / ".snakemake" / "slurm_logs")
        assert log.is_file() and log.stat().st_size > 0, log
        rule_dir = log.relative_to(project / ".snakemake" / "slurm_logs").parts[0]
        rule_dirs.add(rule_dir)
        # The job step's Snakemake ran the rule inside the SLURM job.
        assert f"localrule {rule_dir.removeprefix('rule_')}:" in log.read_text(), log.read_text()[-2000:]
        shown = jobs[slurm_id]
        assert "JobState=COMPLETED" in shown and f"Partition={cluster.partition}" in shown, shown
        assert f"NodeList={cluster.node}" in shown, shown
    assert rule_dirs == {"rule_world", "rule_figure"}

    for name in WORLD_FILES.values():
        assert (project / "results" / "data" / name).stat().st_size > 0, name
    for suffix in (".png", ".pdf", ".provenance.json"):
        assert (project / "figures" / f"probability_transfer{suffix}").stat().st_size > 0, suffix
    # The cluster stopped what it started (munged too, unless one was already running).
    assert {name for _, name in cluster.started} >= {"slurmctld", "slurmd"}
    assert cluster.alive() == [] and slurm_processes() == {}, (cluster.alive(), slurm_processes())
