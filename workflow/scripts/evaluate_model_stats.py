from gemsft.entry import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import io  # noqa: E402
from gemsft.model_stats import entropy_from_file, next_token_distribution, parameter_distance, stats_per_prompt  # noqa: E402
from gemsft.results import mean_rows, metric, run_fields, write_stage  # noqa: E402
from gemsft.world import answer_prefix  # noqa: E402

sm = snakemake  # noqa: F821
stats = entropy_from_file(sm.params.model_dir, sm.params.sft_test)
distance = parameter_distance(sm.params.base_dir, sm.params.model_dir)
per_prompt = stats_per_prompt(stats)
rows = [*mean_rows(per_prompt), metric("parameters", "l2_distance_from_base", distance["l2"])]
next_token = None
if sm.wildcards.objective != "base":  # Figure 11: the base model has no chat template
    kind = sm.params.next_token_kind
    record = next((r for r in io.read_jsonl(sm.params.eval_chat) if r["kind"] == kind), None)
    if record is None:
        raise SystemExit(f"evaluation.next_token_kind: no evaluation chat prompt of kind {kind!r}")
    next_token = next_token_distribution(sm.params.model_dir, record["prompt"], answer_prefix(record))
    next_token["world_p"] = record["p"]
write_stage(sm.output.stage, "model_stats", run_fields(sm.wildcards), rows, per_prompt, sm.config,
            next_token=next_token)
