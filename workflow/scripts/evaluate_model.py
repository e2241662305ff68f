"""Forgetting (lm-eval on the world's knowledge probes or the six leaderboard tasks), entropy,
perplexity, distance from the base model and Figure 11's next-token distribution: everything
measured on the weights themselves."""
from pathlib import Path

from gemsft.entry import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import io, leaderboard  # noqa: E402
from gemsft.forgetting import document_rows, evaluate_tasks, write_world_knowledge_task  # noqa: E402
from gemsft.model_stats import (entropy_from_file, next_token_distribution, parameter_distance,  # noqa: E402
                                stats_per_prompt)
from gemsft.results import mean_rows, metric, run_fields, write_stage  # noqa: E402
from gemsft.world import answer_prefix  # noqa: E402

sm = snakemake  # noqa: F821
run = run_fields(sm.wildcards)
world = sm.params.source == "world"

lm_eval_args = {"batch_size": sm.params.lm_eval_batch_size, "samples_jsonl": sm.output.lm_eval_samples}
if world:
    task_dir = Path(sm.output.lm_eval).parent / "lm_eval_tasks"
    task = write_world_knowledge_task(Path(sm.params.knowledge).resolve(), task_dir)
    evaluate_tasks(sm.params.model_dir, [task], str(task_dir), sm.output.lm_eval, **lm_eval_args)
    per_document = document_rows(sm.output.lm_eval_samples, task, "knowledge")
    rows = mean_rows(per_document)
else:
    task_dir = Path(sm.input.forgetting[0]).resolve()
    # Mirror tasks are cut when written; hub tasks (no data/ folder) are cut here.
    limit = None if (task_dir / "data").is_dir() else sm.params.leaderboard_limit
    tidy = evaluate_tasks(sm.params.model_dir, list(leaderboard.LEADERBOARD_TASKS), str(task_dir), sm.output.lm_eval,
                          limit=limit, include_defaults=False, **lm_eval_args)
    per_document = leaderboard.document_rows(sm.output.lm_eval_samples)
    rows = leaderboard.score_rows(tidy)  # lm-eval's aggregates; the per-document rows average to them
write_stage(sm.output.knowledge, "knowledge", run, rows, per_document, sm.config)

# A fine-tuned model carries its template; the base model may need the configured one.
template = sm.config["model"].get("chat_template_from") if sm.wildcards.objective == "base" else None
stats = entropy_from_file(sm.params.model_dir, sm.params.sft_test, chat_template_from=template)
distance = parameter_distance(sm.params.base_dir, sm.params.model_dir)
per_conversation = stats_per_prompt(stats)
rows = [*mean_rows(per_conversation), metric("parameters", "l2_distance_from_base", distance["l2"])]
next_token = None
# Figure 11 needs the world's true distribution; the base model has no chat template.
if world and sm.wildcards.objective != "base":
    kind = sm.params.next_token_kind
    record = next((r for r in io.read_jsonl(sm.params.eval_chat) if r["kind"] == kind), None)
    if record is None:
        raise SystemExit(f"evaluation.next_token_kind: no evaluation chat prompt of kind {kind!r}")
    next_token = next_token_distribution(sm.params.model_dir, record["prompt"], answer_prefix(record))
    next_token["world_p"] = record["p"]
write_stage(sm.output.model_stats, "model_stats", run, rows, per_conversation, sm.config, next_token=next_token)
