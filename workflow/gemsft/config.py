"""Config validation and the run matrix that the rules expand."""

from __future__ import annotations

import os
from dataclasses import dataclass

from gemsft.objectives import get_objective

NO_BETA = "na"  # beta label of objectives that have no beta
PAPER_CODE = "paper_code"  # evaluation.compat: the official scripts' behaviour (docs/compat.md)
COMPAT_MODES = (None, PAPER_CODE)
# How "no beta" reads where a beta comes from a table cell: empty, the label, or Python's and pandas'
# spellings of a missing value.
_NO_BETA_CELLS = ("", NO_BETA, "nan", "none", "<na>")


@dataclass(frozen=True)
class Run:
    """One SFT run; its fields name its output path."""

    model: str
    objective: str
    beta: str
    seed: int

    @property
    def path(self) -> str:
        return f"{self.model}/{self.objective}/beta-{self.beta}/seed-{self.seed}"


def beta_label(beta) -> str:
    """The one spelling of a beta, in run paths, summary rows, tables and figures alike: "%g" of its
    value (1.0, "1.0" and "1" are all "1"), NO_BETA for none (None, NaN, "" or "na"). A label that is
    not a number is kept as written, so a table still shows it."""
    if beta is None or str(beta).strip().lower() in _NO_BETA_CELLS:
        return NO_BETA
    try:
        return f"{float(beta):g}"
    except (TypeError, ValueError):
        return str(beta)


def objective_seeds(train: dict, objective: str) -> list[int]:
    """An objective's training seeds: train.seeds, then its train.extra_seeds."""
    return list(train["seeds"]) + list((train.get("extra_seeds") or {}).get(objective, []))


def sft_runs(config: dict) -> list[Run]:
    """Every (objective, beta, seed) of the config: GEM objectives at each beta, others once."""
    train, model = config["train"], config["model"]["name"]
    runs = []
    for name in train["objectives"]:
        betas = [beta_label(b) for b in train["gem_betas"]] if get_objective(name).uses_beta else [NO_BETA]
        runs.extend(Run(model, name, beta, seed) for beta in betas for seed in objective_seeds(train, name))
    return runs


def check_extra_seeds(train: dict) -> None:
    """train.extra_seeds names objectives of train.objectives, with seeds not already in train.seeds."""
    for objective, seeds in (train.get("extra_seeds") or {}).items():
        if objective not in train["objectives"]:
            raise ValueError(f"invalid config at 'train.extra_seeds.{objective}': {objective!r} is not one of "
                             f"train.objectives ({', '.join(train['objectives'])})")
        repeated = sorted(set(seeds) & set(train["seeds"]))
        if repeated:
            raise ValueError(f"invalid config at 'train.extra_seeds.{objective}': seed {repeated[0]} is already "
                             "in train.seeds")


def parse_beta(label: str) -> float | None:
    return None if label == NO_BETA else float(label)


BASE_OBJECTIVE = "base"  # the pretrained model, evaluated beside the SFT runs


def base_run(config: dict) -> Run:
    return Run(config["model"]["name"], BASE_OBJECTIVE, NO_BETA, 0)


LOCAL_PATH_PREFIXES = ("/", "./", "../", "~")  # a model value that is a local path, not a hub id


def check_model_paths(config: dict) -> None:
    """A model key that names a local path (not a hub id) must be an existing directory."""
    for section, key in (("model", "pretrained"), ("model", "chat_template_from"), ("reward_model", "pretrained")):
        value = (config.get(section) or {}).get(key)
        if isinstance(value, str) and value.startswith(LOCAL_PATH_PREFIXES) and not os.path.isdir(
                os.path.expanduser(value)):
            raise ValueError(f"invalid config at '{section}.{key}': the local model directory {value!r} "
                             "does not exist")


def check_consistency(config: dict) -> None:
    """Constraints between keys that a JSON schema cannot express."""
    check_model_paths(config)
    check_extra_seeds(config["train"])
    chat_n = config["sampling"]["tasks"]["chat"]["n"]
    too_big = [n for n in config["evaluation"]["bon_n"] if n > chat_n]
    if too_big:
        raise ValueError(f"invalid config at 'evaluation.bon_n': best-of-{max(too_big)} needs "
                         f"sampling.tasks.chat.n >= {max(too_big)} (it is {chat_n})")


def validate_config(config: dict, schema_path: str) -> None:
    """Validate with snakemake (which also fills defaults); report a violation in one line."""
    from snakemake.utils import validate

    try:
        validate(config, schema_path)
    except Exception as err:
        import yaml

        with open(schema_path) as f:
            schema = yaml.safe_load(f)
        import jsonschema  # here: the core's metrics import this module and need no schema

        best = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
        if best is None:
            raise
        key = ".".join(str(p) for p in best.absolute_path) or "<top level>"
        raise ValueError(f"invalid config at '{key}': {best.message}") from None
    check_consistency(config)
