# Config validation, the run matrix and path helpers used by every rule file.
from gemsft.config import NO_BETA, parse_beta, sft_runs, validate_config
from gemsft.world import FILES as WORLD_FILES


validate_config(config, f"{workflow.basedir}/config/schema/config.schema.yaml")

MODEL = config["model"]["name"]
RUNS = sft_runs(config)


wildcard_constraints:
    model=r"[A-Za-z0-9._-]+",
    objective=r"[a-z_]+",
    beta=rf"[0-9.]+|{NO_BETA}",
    seed=r"\d+",


def world_file(name):
    return f"results/world/{WORLD_FILES[name]}"


def base_model_dir(wildcards=None):
    """The base model: pretrained here on the world, or a directory / hub id from the config."""
    return config["model"]["pretrained"] or f"results/base/{MODEL}"


def base_model_input(wildcards=None):
    return [] if config["model"]["pretrained"] else [base_model_dir()]


def sft_checkpoint_dir(wildcards):
    """Outside the rule's outputs, so Snakemake keeps it when a run fails and the rerun resumes."""
    return f"results/checkpoints/sft/{wildcards.model}/{wildcards.objective}/beta-{wildcards.beta}/seed-{wildcards.seed}"


def trained_models():
    return [f"results/sft/{run.path}/model" for run in RUNS]


def final_outputs():
    return trained_models()
