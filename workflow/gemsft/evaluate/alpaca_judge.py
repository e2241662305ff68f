"""AlpacaEval's own judging of a run's chat outputs (`evaluation.alpaca_eval`, off by default).

alpaca_eval's `evaluate` (its annotator, prompt templates, completion parser and win rate) compares
each prompt's exported output (`alpaca_eval_model_outputs.json`, the first sample) with the reference
output of the same prompt (the chat records' `reference`: AlpacaEval's GPT-4 Turbo outputs on real
data, the world's reference answer in the embedded tier), judged by the annotator config the config
names: one shipped with alpaca_eval (e.g. `alpaca_eval_vllm_llama3_70b_fn`, a local Llama-3-70B judge
through vLLM) or a local YAML (`config/alpaca_eval/`).

The stage reports alpaca_eval's win rate and its standard error, and per prompt the judge's
preference as a win (100), loss (0) or tie (50), for the report's intervals. The length-controlled win
rate is added where alpaca_eval can fit it: its GLM needs AlpacaEval's per-instruction difficulty
(`df_gamed.csv` from the hub), so it is computed on the AlpacaEval set with that file in the Hugging
Face cache, and the stage records why not otherwise.

Nothing is cached between runs (alpaca_eval's default caches annotations next to its config, inside
its package), and nothing is written into alpaca_eval's package (its LC weights directory).
"""

from __future__ import annotations

import math
from pathlib import Path

from gemsft import files
from gemsft.evaluate.stage import metric, write_stage

TASK = "chat"
WIN_RATE = "alpaca_eval_win_rate"
STANDARD_ERROR = "alpaca_eval_standard_error"
LC_WIN_RATE = "alpaca_eval_lc_win_rate"
REFERENCE_GENERATOR = "reference"


def shipped_configs() -> list[str]:
    """The annotator configs alpaca_eval ships (directory names under its evaluators_configs)."""
    from alpaca_eval import constants

    return sorted(p.name for p in Path(constants.EVALUATORS_CONFIG_DIR).iterdir() if (p / "configs.yaml").is_file())


def resolve_annotators_config(setting: str) -> str:
    """`evaluation.alpaca_eval.annotators_config` as alpaca_eval takes it: a local YAML file or a
    directory holding configs.yaml (made absolute), or the name of a config it ships. Anything else is
    a one-line error naming the key."""
    path = Path(setting)
    if path.suffix in (".yaml", ".yml") or "/" in setting:
        found = path / "configs.yaml" if path.is_dir() else path
        if not found.is_file():
            raise ValueError(f"evaluation.alpaca_eval.annotators_config: {setting} is neither a YAML file nor a "
                             "directory holding configs.yaml")
        return str(found.resolve())
    if setting not in shipped_configs():
        raise ValueError(f"evaluation.alpaca_eval.annotators_config: {setting!r} is neither a YAML file nor an "
                         "annotator config shipped with alpaca_eval (e.g. alpaca_eval_vllm_llama3_70b_fn)")
    return setting


def outputs_to_judge(records: list[dict], model_outputs: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(model outputs, reference outputs, their records), one per exported prompt in the export's order
    (the prompts the run sampled), matched to the chat records by instruction. An exported prompt
    without a record or a reference is an error naming it."""
    by_prompt = {record["prompt"]: record for record in records}
    if len({row["instruction"] for row in model_outputs}) != len(model_outputs):
        raise ValueError("the exported outputs repeat an instruction: alpaca_eval matches outputs by instruction")
    ours, reference, judged = [], [], []
    for row in model_outputs:
        record = by_prompt.get(row["instruction"])
        if record is None:
            raise ValueError(f"exported instruction {row['instruction'][:80]!r} is not among the chat records")
        if not record.get("reference"):
            raise ValueError(f"chat record {record['id']!r} has no reference output to judge against")
        ours.append({"instruction": record["prompt"], "output": row["output"], "generator": row["generator"]})
        reference.append({"instruction": record["prompt"], "output": record["reference"],
                          "generator": REFERENCE_GENERATOR})
        judged.append(record)
    return ours, reference, judged


def judge(model_outputs: list[dict], reference_outputs: list[dict], annotators_config: str) -> tuple[dict, list[dict]]:
    """alpaca_eval's leaderboard row of the model (win_rate, standard_error, n_total, ...) and its
    annotations (one per instruction, `preference` 1: reference better, 2: model better, 1.5: tie)."""
    from alpaca_eval.main import evaluate

    leaderboard, annotations = evaluate(
        model_outputs=model_outputs, reference_outputs=reference_outputs, annotators_config=annotators_config,
        output_path=None, precomputed_leaderboard=None, is_return_instead_of_print=True,
        fn_metric="get_winrate", sort_by="win_rate", is_cache_leaderboard=False, caching_path=None)
    name = model_outputs[0]["generator"]
    row = leaderboard.loc[name].to_dict()
    return row, list(annotations)


def length_controlled(annotations: list[dict]) -> tuple[float | None, str | None]:
    """alpaca_eval's length-controlled win rate of the annotations, or (None, why not)."""
    try:
        from alpaca_eval.metrics.glm_winrate import get_length_controlled_winrate

        value = get_length_controlled_winrate(annotations, save_weights_dir=None)["length_controlled_winrate"]
    except Exception as err:  # its GLM needs the hub's df_gamed.csv and AlpacaEval's instruction indices
        first = str(err).splitlines()[0] if str(err) else ""
        return None, f"{type(err).__name__}: {first}"[:300]
    return (float(value), None) if math.isfinite(value) else (None, "the GLM gave no finite value")


def preference_score(preference) -> float:
    """A judged prompt as a win rate contribution: 100 when the model's output is preferred, 0 when
    the reference's is, 50 for a tie, as alpaca_eval's win rate counts them; NaN when unparsed."""
    if preference is None or (isinstance(preference, float) and math.isnan(preference)):
        return math.nan
    return (float(preference) - 1.0) * 100.0


def stage_rows(records: list[dict], leaderboard_row: dict, annotations: list[dict],
               lc_win_rate: float | None) -> tuple[list[dict], list[dict]]:
    """(aggregate rows, per-prompt rows) of the stage."""
    by_instruction = {a["instruction"]: a for a in annotations}
    per_prompt = [metric(TASK, WIN_RATE, preference_score(by_instruction.get(r["prompt"], {}).get("preference")),
                         prompt_id=r["id"]) for r in records]
    n_judged = sum(not math.isnan(r["value"]) for r in per_prompt)
    rows = [metric(TASK, WIN_RATE, leaderboard_row["win_rate"], n_prompts=n_judged),
            metric(TASK, STANDARD_ERROR, leaderboard_row["standard_error"], n_prompts=n_judged)]
    if lc_win_rate is not None:
        rows.append(metric(TASK, LC_WIN_RATE, lc_win_rate, n_prompts=n_judged))
    return rows, per_prompt


def write_alpaca_eval(records: list[dict], model_outputs: list[dict], settings: dict, stage_path, annotations_path,
                      run: dict, config: dict) -> dict:
    """Judge a run's exported outputs and write the stage JSON and alpaca_eval's annotations."""
    annotators_config = resolve_annotators_config(settings["annotators_config"])
    ours, reference, judged = outputs_to_judge(records, model_outputs)
    leaderboard_row, annotations = judge(ours, reference, annotators_config)
    lc_win_rate, lc_missing = length_controlled(annotations)
    rows, per_prompt = stage_rows(judged, leaderboard_row, annotations, lc_win_rate)
    files.write_json(annotations_path, annotations)
    return write_stage(stage_path, "alpaca_eval", run, rows, per_prompt, config, annotators_config=annotators_config,
                       length_controlled=lc_missing or "computed")
