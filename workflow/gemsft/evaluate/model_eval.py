"""Everything measured on a model's weights, in one job (one load of the stack): forgetting (lm-eval on
the world's knowledge probes or the six leaderboard tasks), entropy and perplexity on the SFT test set,
the distance from the base model and Figure 11's next-token distribution."""

from __future__ import annotations

from pathlib import Path

from gemsft import files
from gemsft.data.leaderboard import LEADERBOARD_TASKS
from gemsft.data.world import answer_prefix
from gemsft.evaluate import leaderboard
from gemsft.evaluate.forgetting import document_rows, evaluate_tasks, write_world_knowledge_task
from gemsft.evaluate.model_stats import entropy_from_file, next_token_distribution, parameter_distance, stats_per_prompt
from gemsft.evaluate.stage import mean_rows, metric, write_stage


def evaluate_forgetting(model_dir, source: str, knowledge_path, leaderboard_dir, lm_eval_path, samples_path,
                        batch_size: int, leaderboard_limit: int | None,
                        loading: dict | None = None) -> tuple[list[dict], list[dict]]:
    """(rows, per-document rows) of the forgetting evaluation: lm-eval on the world's knowledge probes
    (`source` "world") or on the six leaderboard tasks written by the leaderboard_tasks rule."""
    lm_eval_args = {"batch_size": batch_size, "samples_jsonl": samples_path, "loading": loading}
    if source == "world":
        task_dir = Path(lm_eval_path).parent / "lm_eval_tasks"
        task = write_world_knowledge_task(Path(knowledge_path).resolve(), task_dir)
        evaluate_tasks(model_dir, [task], str(task_dir), lm_eval_path, **lm_eval_args)
        per_document = document_rows(samples_path, task, "knowledge")
        return mean_rows(per_document), per_document
    task_dir = Path(leaderboard_dir).resolve()
    # Mirror tasks are cut when written; hub tasks (no data/ folder) are cut here.
    limit = None if (task_dir / "data").is_dir() else leaderboard_limit
    tidy = evaluate_tasks(model_dir, list(LEADERBOARD_TASKS), str(task_dir), lm_eval_path, limit=limit,
                          include_defaults=False, **lm_eval_args)
    # lm-eval's aggregates; the per-document rows average to them
    return leaderboard.score_rows(tidy), leaderboard.document_rows(samples_path)


def evaluate_weights(model_dir, base_dir, sft_test_path, chat_template_from=None,
                     loading: dict | None = None) -> tuple[list[dict], list[dict]]:
    """(rows, per-conversation rows): entropy and perplexity on the SFT test set, and the L2 distance
    of the weights from the base model's."""
    stats = entropy_from_file(model_dir, sft_test_path, chat_template_from=chat_template_from, loading=loading)
    distance = parameter_distance(base_dir, model_dir, loading)
    per_conversation = stats_per_prompt(stats)
    return [*mean_rows(per_conversation), metric("parameters", "l2_distance_from_base", distance["l2"])], per_conversation


def world_next_token(model_dir, eval_chat_path, kind: str, loading: dict | None = None) -> dict:
    """Figure 11: the model's next-token distribution after the answer prefix of the first evaluation
    chat prompt of `kind`, beside the world's true answer distribution."""
    record = next((r for r in files.read_jsonl(eval_chat_path) if r["kind"] == kind), None)
    if record is None:
        raise ValueError(f"evaluation.next_token_kind: no evaluation chat prompt of kind {kind!r}")
    next_token = next_token_distribution(model_dir, record["prompt"], answer_prefix(record), loading=loading)
    next_token["world_p"] = record["p"]
    return next_token


def evaluate_model(run: dict, config: dict, model_dir, base_dir, source: str, knowledge_path, leaderboard_dir,
                   sft_test_path, eval_chat_path, next_token_kind: str, lm_eval_batch_size: int,
                   leaderboard_limit: int | None, outputs, loading: dict | None = None) -> None:
    """The evaluate_model rule: writes the knowledge stage (with lm-eval's results and samples) and the
    model_stats stage. `outputs` has the rule's output paths (knowledge, lm_eval, lm_eval_samples,
    model_stats). `model_dir` and `base_dir` are directories or hub ids; every model is loaded with
    the `loading` settings (model.dtype, model.attn_implementation) on the stage's device."""
    rows, per_document = evaluate_forgetting(model_dir, source, knowledge_path, leaderboard_dir, outputs.lm_eval,
                                             outputs.lm_eval_samples, lm_eval_batch_size, leaderboard_limit, loading)
    write_stage(outputs.knowledge, "knowledge", run, rows, per_document, config)
    base = run["objective"] == "base"
    # A fine-tuned model carries its template; the base model may need the configured one.
    template = config["model"].get("chat_template_from") if base else None
    rows, per_conversation = evaluate_weights(model_dir, base_dir, sft_test_path, chat_template_from=template,
                                              loading=loading)
    # Figure 11 needs the world's true distribution; the base model has no chat template.
    next_token = (world_next_token(model_dir, eval_chat_path, next_token_kind, loading)
                  if source == "world" and not base else None)
    write_stage(outputs.model_stats, "model_stats", run, rows, per_conversation, config, next_token=next_token)
