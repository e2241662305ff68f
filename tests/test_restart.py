"""Sampling and scoring restart cleanly, and nothing is silently dropped (docs/guarantees.md).

- Every rule script that scores a samples file checks it against the config's sampling plan: on a
  samples file cut short it fails with one line naming the file and the prompt, and writes nothing.
- A `sample` job and an `evaluate_math` job stopped with SIGTERM while their output is written under
  a temporary name leave nothing behind, and their rerun writes the rows of an uninterrupted job.

The rule scripts run as Snakemake's `script:` directive runs them: the file executed as __main__ with
a `snakemake` object (Snakemake's own class) holding the rule's input, output, params and wildcards,
on the world of config/smoke.yaml and the tiny base model of tests/conftest.py. A Snakemake run
would first build everything upstream (the world, pretraining, SFT); a script run on its own needs
only its inputs.
"""

from __future__ import annotations

import os
import pickle
import re
import runpy
import selectors
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from gemsft import files
from gemsft.data.world import FILES, write_world
from gemsft.model_loading import loading_settings
from gemsft.sample.base_prompt import base_sampling
from gemsft.sample.plan import OUTPUT_TASKS, sample_requests, task_settings

from conftest import TINY_MODEL_CFG

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
RUN = {"model": "tiny", "objective": "gem", "beta": "0.5", "seed": "1234"}


@pytest.fixture(scope="module")
def config() -> dict:
    """config/config.yaml with config/smoke.yaml over it, as `--configfile config/smoke.yaml` merges them."""
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config/smoke.yaml").read_text()))
    return config


@pytest.fixture(scope="module")
def world(config, tmp_path_factory) -> Path:
    """The smoke config's world: the data directory every rule reads."""
    data = tmp_path_factory.mktemp("results") / "data"
    write_world(config["world"], data)
    return data


def rule_job(rule: str, input: dict, output: dict, params: dict, config: dict, threads: int = 1):
    """The `snakemake` object Snakemake hands a rule's script (snakemake.iocontainers.Snakemake)."""
    from snakemake.iocontainers import InputFiles, Log, OutputFiles, Params, ResourceList, Snakemake, Wildcards

    return Snakemake(InputFiles(fromdict={k: str(v) for k, v in input.items()}),
                     OutputFiles(fromdict={k: str(v) for k, v in output.items()}),
                     Params(fromdict=params), Wildcards(fromdict=RUN), threads,
                     ResourceList(fromdict={"_cores": threads, "_nodes": 1}), Log(), config, rule,
                     bench_iteration=None, scriptdir=str(SCRIPTS))


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if not p.is_dir())


# ------------------------------------------------------------------------ scorers check their samples

# The scorer rules' jobs, as rules/evaluate.smk and rules/score.smk define their input, output and
# params (the params a script reads only after its samples check still get their rule's values).
# Each takes the samples files by input name, the output directory and the input cut short.

def evaluate_chat_job(config, world, samples, out, cut=None):
    return rule_job("evaluate_chat", {**samples, "data": world},
                    {"scores": out / "scores.jsonl", "chat_quality": out / "chat_quality.json",
                     "diversity": out / "diversity.json", "export": out / "alpaca_eval_model_outputs.json"},
                    {"reward_model": str(out.parent / "reward_model"), "reward_metrics": None,
                     "records": str(world / FILES["eval_chat"]), "world": True,
                     "bon_n": config["evaluation"]["bon_n"], "compat": None, "compat_tokenizer": None,
                     "batch_size": 32, "max_length": 256, "loading": loading_settings(config["reward_model"])},
                    config)


def evaluate_diversity_job(config, world, samples, out, cut=None):
    return rule_job("evaluate_diversity", {**samples, "data": world},
                    {"stage": out / "diversity.json", "export": out / "alpaca_eval_model_outputs.json"},
                    {"records": str(world / FILES["eval_chat"]), "compat": None, "compat_tokenizer": None,
                     "world": True},
                    config)


def evaluate_math_job(config, world, samples, out, cut=None):
    return rule_job("evaluate_math", {**samples, "data": world}, {"stage": out / "math.json"},
                    {"records": str(world / FILES["eval_math"]), "compat": None}, config)


def evaluate_code_job(config, world, samples, out, cut=None):
    # Only the task cut short: the other task's samples would go through the sandbox first.
    tasks = [cut] if cut else ["code", "humaneval"]
    outputs = {}
    for name in ("code", "humaneval"):
        outputs |= {name: out / f"{name}.json", f"{name}_executions": out / f"{name}_executions.jsonl",
                    f"{name}_export": out / f"{name}_samples.jsonl"}
    return rule_job("evaluate_code", {**samples, "data": world}, outputs,
                    {"tasks": tasks, "records": str(world / FILES["eval_code"]),
                     "humaneval_prompts": config["sampling"]["tasks"]["humaneval"]["prompts"],
                     "pass_k": config["evaluation"]["pass_k"], "timeout_s": 3.0,
                     "sandbox": config["evaluation"]["sandbox"]},
                    config)


# {script: (its job, {samples input: sampling output}, the sampling plan of those samples)}
SCORERS = {
    "evaluate_chat": (evaluate_chat_job, {"samples": "chat"}, lambda sampling: sampling),
    "evaluate_diversity": (evaluate_diversity_job, {"samples": "chat"}, base_sampling),
    "evaluate_math": (evaluate_math_job, {"samples": "math", "greedy": "math_greedy"}, lambda sampling: sampling),
    "evaluate_code": (evaluate_code_job, {"code": "code", "humaneval": "humaneval"}, lambda sampling: sampling),
}
# Every samples input of every scorer, each in turn the one cut short.
CUT_INPUTS = [(script, name) for script, (_, inputs, _) in SCORERS.items() for name in inputs]


def planned_rows(world: Path, sampling: dict, output: str) -> tuple[list[dict], int]:
    """A complete samples file of the plan: every planned prompt with samples 0..n-1."""
    task = OUTPUT_TASKS[output]
    request = sample_requests(world, {task: task_settings(sampling, task)}, [output])[output]
    rows = [{"prompt_id": p["id"], "sample_index": i, "text": "The answer is: 1", "num_tokens": 5,
             "finish_reason": "stop"} for p in request.prompts for i in range(request.spec.n)]
    return rows, request.spec.n


@pytest.fixture
def in_process(monkeypatch):
    """run(script, job): the rule script executed in this process as Snakemake's `script:` runs it.
    Puts back what gemsft.rule_script.start changes: the SIGTERM handler, the thread settings."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))  # undone after the test, set or not before
    handler = signal.getsignal(signal.SIGTERM)
    torch_threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None

    def run(script: str, job) -> None:
        runpy.run_path(str(SCRIPTS / f"{script}.py"), init_globals={"snakemake": job}, run_name="__main__")

    yield run
    signal.signal(signal.SIGTERM, handler)
    if torch_threads is not None:
        sys.modules["torch"].set_num_threads(torch_threads)


@pytest.mark.parametrize("script, cut", CUT_INPUTS, ids=[f"{s}-{c}" for s, c in CUT_INPUTS])
def test_a_scorer_given_a_samples_file_cut_short_fails_in_one_line_and_writes_nothing(
        script, cut, config, world, tmp_path, in_process):
    """The last sample of the last planned prompt is missing: the job names the file and that prompt,
    and scores nothing. Without the script's `read_planned_samples` call this fails (NameError, or
    scores that are written or fail elsewhere)."""
    make_job, inputs, plan = SCORERS[script]
    sampling = plan(config["sampling"])
    samples = {}
    for name, output in inputs.items():
        rows, n = planned_rows(world, sampling, output)
        path = tmp_path / "samples" / f"{output}.jsonl"
        files.write_jsonl(path, rows[:-1] if name == cut else rows)
        samples[name] = path
        if name == cut:
            last, expected = rows[-1]["prompt_id"], f"has {n - 1} of its {n} samples"
    out = tmp_path / "out"
    with pytest.raises(ValueError) as err:
        in_process(script, make_job(config, world, samples, out, cut))
    message = str(err.value)
    assert "\n" not in message, message
    assert message.startswith(f"{samples[cut]}: prompt {last!r} {expected}"), message
    assert not out.exists() or files_under(out) == [], files_under(out)


def test_every_rule_that_reads_samples_is_checked_above():
    """A new scorer rule (its input names a file under results/samples/) needs a case in SCORERS."""
    scripts = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", smk.read_text(), flags=re.M | re.S):
            inputs = re.search(r"^    input:\n(.*?)(?=^    \w+:)", body, flags=re.M | re.S)
            script = re.search(r'^    script:\n\s+"\.\./workflow/scripts/(\w+)\.py"', body, flags=re.M)
            if inputs and "results/samples/" in inputs.group(1):
                assert script, f"rule {rule} reads samples but runs no script of workflow/scripts"
                scripts[rule] = script.group(1)
    assert set(scripts.values()) == set(SCORERS), scripts
    readers = {p.stem for p in SCRIPTS.glob("*.py") if "read_planned_samples" in p.read_text()}
    assert readers <= set(SCORERS), readers


# ------------------------------------------------------------------------ stopped jobs rerun the same

# The job's process: the rule script run as __main__ with the pickled `snakemake` object. With
# "stall", the first output is written completely under its temporary name and the job then waits
# there, before the rename, until it is stopped: the worst moment to be stopped, reached without
# guessing a delay.
JOB_PROCESS = textwrap.dedent("""
    import contextlib, pickle, runpy, signal, sys
    from gemsft import files

    job, script, mode = sys.argv[1:]
    with open(job, "rb") as f:
        snakemake = pickle.load(f)
    if mode == "stall":
        atomic_path = files.atomic_path

        @contextlib.contextmanager
        def stalled(path, directory=False):
            with atomic_path(path, directory) as tmp:
                yield tmp
                print(f"written {tmp}", flush=True)
                signal.pause()
        files.atomic_path = stalled
    runpy.run_path(script, init_globals={"snakemake": snakemake}, run_name="__main__")
""")
# Reading the model, sampling and scoring the tiny model's few prompts takes seconds; a job that
# reaches neither its end nor its stall in this time is stuck.
JOB_TIMEOUT_S = 600


def start_job(script: str, job, directory: Path, mode: str) -> subprocess.Popen:
    directory.mkdir(parents=True, exist_ok=True)
    pickled = directory / f"{script}.job.pickle"
    pickled.write_bytes(pickle.dumps(job))
    with open(directory / f"{script}.{mode}.log", "w") as log:
        return subprocess.Popen([sys.executable, "-c", JOB_PROCESS, str(pickled), str(SCRIPTS / f"{script}.py"),
                                 mode], stdout=subprocess.PIPE, stderr=log, text=True)


def run_job(script: str, job, directory: Path) -> None:
    proc = start_job(script, job, directory, "run")
    proc.communicate(timeout=JOB_TIMEOUT_S)
    assert proc.returncode == 0, (directory / f"{script}.run.log").read_text()[-3000:]


def stall_and_stop(script: str, job, directory: Path) -> Path:
    """Start the job, wait until its first output is written under its temporary name, stop it with
    SIGTERM as a scheduler does. Returns that temporary file (gone by then)."""
    proc = start_job(script, job, directory, "stall")
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=JOB_TIMEOUT_S)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("written "):
        proc.kill()
        proc.wait()
        raise AssertionError(f"the job ended or hung before writing:\n"
                             f"{(directory / f'{script}.stall.log').read_text()[-3000:]}")
    temporary = Path(line.removeprefix("written ").strip())
    assert temporary.is_file() and temporary.stat().st_size > 0, temporary  # complete, not yet renamed
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, (directory / f"{script}.stall.log").read_text()[-3000:]
    return temporary


@pytest.fixture(scope="module")
def tiny_model_cfg() -> dict:
    """conftest's tiny base with room for the world's math prompts (~230 tokens of its tokenizer)."""
    return {**TINY_MODEL_CFG, "max_position_embeddings": 512}


def sample_job(config, world, model_dir, out):
    """rules/sample.smk's `sample` job for the math task (n samples and the greedy answer)."""
    return rule_job("sample", {"model": model_dir, "data": world},
                    {"math": out / "math.jsonl", "math_greedy": out / "math_greedy.jsonl"},
                    {"model_dir": str(model_dir), "backend": "hf", "batch_size": config["sampling"]["batch_size"],
                     "tasks": {"math": task_settings(config["sampling"], "math")}, "prompt_format": "chat",
                     "loading": loading_settings(config["model"])},
                    config)


@pytest.fixture(scope="module")
def uninterrupted_samples(config, world, base_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "samples"
    run_job("sample", sample_job(config, world, base_dir, out), out.parent)
    return out


def test_a_stopped_sample_job_leaves_nothing_and_its_rerun_writes_the_uninterrupted_rows(
        config, world, base_dir, uninterrupted_samples, tmp_path):
    out = tmp_path / "samples"
    job = sample_job(config, world, base_dir, out)
    temporary = stall_and_stop("sample", job, tmp_path / "jobs")
    assert temporary.parent == out and temporary.name.startswith(".math.jsonl."), temporary
    assert files_under(out) == []  # neither the output nor its temporary name

    run_job("sample", job, tmp_path / "jobs")
    math = config["sampling"]["tasks"]["math"]
    counts = {"math.jsonl": math["prompts"] * math["n"], "math_greedy.jsonl": math["prompts"]}
    assert files_under(out) == files_under(uninterrupted_samples) == sorted(counts)
    for name, count in counts.items():
        rows = files.read_jsonl(out / name)
        assert len(rows) == count and rows == files.read_jsonl(uninterrupted_samples / name), name


def test_a_stopped_evaluate_job_leaves_nothing_and_its_rerun_writes_the_uninterrupted_rows(
        config, world, uninterrupted_samples, tmp_path):
    samples = {"samples": uninterrupted_samples / "math.jsonl", "greedy": uninterrupted_samples / "math_greedy.jsonl"}
    reference = tmp_path / "uninterrupted"
    run_job("evaluate_math", evaluate_math_job(config, world, samples, reference), tmp_path / "jobs")

    out = tmp_path / "eval"
    job = evaluate_math_job(config, world, samples, out)
    temporary = stall_and_stop("evaluate_math", job, tmp_path / "jobs")
    assert temporary.parent == out and temporary.name.startswith(".math.json."), temporary
    assert files_under(out) == []

    run_job("evaluate_math", job, tmp_path / "jobs")
    rerun, full = files.read_json(out / "math.json"), files.read_json(reference / "math.json")
    assert rerun["rows"] and rerun["per_prompt"]
    # Provenance names the checkout's state at the time (git_dirty), not the job's result.
    assert {k: v for k, v in rerun.items() if k != "provenance"} == {k: v for k, v in full.items() if k != "provenance"}
