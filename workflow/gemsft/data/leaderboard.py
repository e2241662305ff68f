"""The six Open LLM Leaderboard v1 tasks of the paper-tier forgetting evaluation (Section 6.2):
ARC-Challenge 25-shot acc_norm, HellaSwag 10-shot acc_norm, MMLU 5-shot acc (unweighted mean over the 57
subjects), TruthfulQA MC2 0-shot, WinoGrande 5-shot acc, GSM8K 5-shot exact_match (strict "#### number").

Prompts, choices, few-shot splits and metrics mirror lm-eval 0.4.13's built-in tasks (the base configs and
helpers are in `lm_eval_tasks/leaderboard/`). `write_leaderboard_tasks` writes the runnable task YAMLs
into a run directory; they read either the hub datasets at pinned revisions, or the local data mirror
(../shared/data beside the checkout, see its SOURCES.md), whose files are converted once into JSONL in the hub's schema
(`gemsft.data.leaderboard_mirror`) so that the same doc_to_text / doc_to_choice serve both. Run them with
`gemsft.evaluate.forgetting.evaluate_tasks(model_dir, tasks, out_dir, ...)` and pick the leaderboard's metric per
task with `primary_scores(tidy, primary_metrics())`.

Deviations of the mirror variant (the hub variant has none): HellaSwag's mirror holds only the
validation split, so its few-shot examples come from a fixed held-out twentieth of validation
(`leaderboard_mirror.HELLASWAG_FEWSHOT_EVERY`), which is not scored (9,540 of 10,042 documents are);
WinoGrande's few-shot pool is train_xs (160 rows) instead of winogrande_xl's train (40,398), the only
train file the mirror has.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from gemsft import files
from gemsft.data._rows import check_limit
from gemsft.data.leaderboard_mirror import MirrorConverter
from gemsft.data.sources import GSM8K_HUB_COMMIT

TASKS_DIR = Path(__file__).parents[1] / "lm_eval_tasks" / "leaderboard"

ARC = "gemsft_arc_challenge"
HELLASWAG = "gemsft_hellaswag"
MMLU = "gemsft_mmlu"  # a group of the 57 `gemsft_mmlu_<subject>` tasks
TRUTHFULQA = "gemsft_truthfulqa_mc2"
WINOGRANDE = "gemsft_winogrande"
GSM8K = "gemsft_gsm8k"

# task -> (num_fewshot, the leaderboard's metric as `gemsft.evaluate.forgetting.tidy_results` names it)
LEADERBOARD_TASKS: dict[str, tuple[int, str]] = {
    ARC: (25, "acc_norm"),
    HELLASWAG: (10, "acc_norm"),
    MMLU: (5, "acc"),
    TRUTHFULQA: (0, "mc2"),
    WINOGRANDE: (5, "acc"),
    GSM8K: (5, "exact_match,strict-match"),
}

BASE_CONFIGS = {
    ARC: TASKS_DIR / "_arc_challenge.yaml",
    HELLASWAG: TASKS_DIR / "_hellaswag.yaml",
    MMLU: TASKS_DIR / "_mmlu.yaml",
    TRUTHFULQA: TASKS_DIR / "_truthfulqa_mc2.yaml",
    WINOGRANDE: TASKS_DIR / "_winogrande.yaml",
    GSM8K: TASKS_DIR / "_gsm8k.yaml",
}

# Hub datasets as lm-eval 0.4.13's tasks name them (dataset_path, dataset_name), at pinned revisions
# (commit ids of the hub dataset repositories; MMLU's dataset_name is the subject).
HUB_DATASETS: dict[str, tuple[str, str | None, str]] = {
    ARC: ("allenai/ai2_arc", "ARC-Challenge", "210d026faf9955653af8916fad021475a3f00453"),
    HELLASWAG: ("Rowan/hellaswag", None, "218ec52e09a7e7462a5400043bb9a69a41d06b76"),
    MMLU: ("cais/mmlu", None, "c30699e8356da336a370243923dbaf21066bb9fe"),
    TRUTHFULQA: ("truthfulqa/truthful_qa", "multiple_choice", "741b8276f2d1982aa3d5b832d3ee81ed3b896490"),
    WINOGRANDE: ("allenai/winogrande", "winogrande_xl", "01e74176c63542e6b0bcb004dcdea22d94fb67b5"),
    GSM8K: ("openai/gsm8k", "main", GSM8K_HUB_COMMIT),
}

MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine",
    "college_physics", "computer_security", "conceptual_physics", "econometrics", "electrical_engineering",
    "elementary_mathematics", "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics", "high_school_mathematics",
    "high_school_microeconomics", "high_school_physics", "high_school_psychology", "high_school_statistics",
    "high_school_us_history", "high_school_world_history", "human_aging", "human_sexuality",
    "international_law", "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy",
    "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy",
    "virology", "world_religions",
)
assert len(MMLU_SUBJECTS) == 57


def primary_metrics() -> dict[str, str]:
    """{task: metric} of the leaderboard, for `gemsft.evaluate.forgetting.primary_scores`."""
    return {task: metric for task, (_, metric) in LEADERBOARD_TASKS.items()}


def mmlu_task(subject: str) -> str:
    return f"{MMLU}_{subject}"


def mmlu_description(subject: str) -> str:
    """lm-eval's MMLU task description (tasks/mmlu/_generate_configs.py)."""
    return f"The following are multiple choice questions (with answers) about {' '.join(subject.split('_'))}.\n\n"


# --------------------------------------------------------------------------- writing the task YAMLs


def _write_yaml(path: Path, config: dict, header: str) -> None:
    # The temporary name does not end in .yaml, so a concurrent task index never sees a partial file.
    with files.atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _hub_source(task: str, dataset_name: str | None = None) -> dict:
    path, name, revision = HUB_DATASETS[task]
    source = {"dataset_path": path}
    if dataset_name or name:
        source["dataset_name"] = dataset_name or name
    source["dataset_kwargs"] = {"revision": revision}
    return source


# Splits per task: (hub, mirror). Keys are lm-eval TaskConfig fields.
_SPLITS = {
    ARC: ({"training_split": "train", "validation_split": "validation", "test_split": "test",
           "fewshot_split": "train"},) * 2,
    HELLASWAG: ({"training_split": "train", "validation_split": "validation", "fewshot_split": "train"},
                {"validation_split": "validation", "fewshot_split": "fewshot"}),
    MMLU: ({"test_split": "test", "fewshot_split": "dev"},) * 2,
    TRUTHFULQA: ({"validation_split": "validation"},) * 2,
    WINOGRANDE: ({"training_split": "train", "validation_split": "validation", "fewshot_split": "train"},
                 {"training_split": "train_xs", "validation_split": "validation", "fewshot_split": "train_xs"}),
    GSM8K: ({"training_split": "train", "test_split": "test", "fewshot_split": "train"},) * 2,
}


def write_leaderboard_tasks(out_dir: str | os.PathLike, mirror: str | os.PathLike | None,
                            limit: int | None = None) -> list[str]:
    """Write the runnable YAMLs of the six leaderboard tasks into `out_dir` and return their names
    (`LEADERBOARD_TASKS`' keys; `gemsft_mmlu` is a group of 57 subject tasks, written under
    `out_dir/mmlu/`). Pass `out_dir` as `include_path` to `gemsft.evaluate.forgetting.evaluate_tasks`.

    `mirror` None: the YAMLs name the hub datasets (`dataset_path`, `dataset_name`) at the revisions of
    `HUB_DATASETS` (`dataset_kwargs.revision`); running them needs the hub or its cache. `mirror` a
    directory (the local data mirror): its files are converted once into hub-schema JSONL under
    `out_dir/data/`, written atomically, and the YAMLs read them (`dataset_path: json` + `data_files`).
    `limit`: keep the first `limit` documents of each scored split (per MMLU subject), never of a
    few-shot pool; mirror only (for the hub, use `evaluate_tasks(..., limit=...)`, which does the same).

    `out_dir` is written as a whole: everything goes into a temporary sibling, renamed to `out_dir`
    (replacing what was there) only once every file is written, so a stopped job leaves no partial
    task directory. The YAMLs name the converted files at their final place under `out_dir`.
    """
    limit = check_limit(limit, minimum=1)
    out_dir = Path(out_dir).resolve()
    with files.atomic_path(out_dir, directory=True) as stage:
        _write_tasks(stage, out_dir, mirror, limit)
    return list(LEADERBOARD_TASKS)


def _write_tasks(stage: Path, out_dir: Path, mirror: str | os.PathLike | None, limit: int | None) -> None:
    """write_leaderboard_tasks' files, written under `stage`; paths inside them name `out_dir`."""
    if mirror is None:
        if limit is not None:
            raise ValueError("limit cuts the converted mirror files; with the hub datasets (mirror=None) "
                             "pass limit to gemsft.evaluate.forgetting.evaluate_tasks instead")
        sources = {task: _hub_source(task) for task in LEADERBOARD_TASKS if task != MMLU}
        subjects = {s: _hub_source(MMLU, s) for s in MMLU_SUBJECTS}
        variant = 0
        where = "the hub datasets at pinned revisions"
    else:
        root = Path(mirror).resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: data mirror directory not found")
        converter = MirrorConverter(root, stage / "data", limit, named_dir=out_dir / "data")
        sources = {ARC: converter.arc(), HELLASWAG: converter.hellaswag(), TRUTHFULQA: converter.truthfulqa(),
                   WINOGRANDE: converter.winogrande(), GSM8K: converter.gsm8k()}
        subjects = {s: converter.mmlu(s) for s in MMLU_SUBJECTS}
        variant = 1
        where = f"the data mirror {root} (converted to hub-schema JSONL under data/" + \
                (f", scored splits cut to {limit} documents)" if limit is not None else ")")

    header = (f"# Written by gemsft.data.leaderboard.write_leaderboard_tasks from {where}.\n"
              f"# Prompt, choices, few-shot count and metrics come from the included base config.\n")
    for task, source in sources.items():
        config = {"task": task, "include": str(BASE_CONFIGS[task]), **source, **_SPLITS[task][variant]}
        _write_yaml(stage / f"{task}.yaml", config, header)
    for subject, source in subjects.items():
        config = {"task": mmlu_task(subject), "task_alias": subject, "include": str(BASE_CONFIGS[MMLU]),
                  "description": mmlu_description(subject), **source, **_SPLITS[MMLU][variant]}
        _write_yaml(stage / "mmlu" / f"{mmlu_task(subject)}.yaml", config, header)
    group = {"group": MMLU, "task": [mmlu_task(s) for s in MMLU_SUBJECTS],
             # The leaderboard's MMLU is the plain mean of the 57 subject accuracies.
             "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": False}],
             "metadata": {"version": 1.0}}
    _write_yaml(stage / f"{MMLU}.yaml", group, header)
