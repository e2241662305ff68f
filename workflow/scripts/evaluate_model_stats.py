from gemsft.entry import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.model_stats import entropy_from_file, parameter_distance  # noqa: E402
from gemsft.results import metric, run_fields, write_stage  # noqa: E402

sm = snakemake  # noqa: F821
stats = entropy_from_file(sm.params.model_dir, sm.params.sft_test)
distance = parameter_distance(sm.params.base_dir, sm.params.model_dir)
rows = [metric("sft_test", "entropy", stats["entropy"]), metric("sft_test", "perplexity", stats["perplexity"]),
        metric("parameters", "l2_distance_from_base", distance["l2"])]
write_stage(sm.output.stage, "model_stats", run_fields(sm.wildcards), rows, [], sm.config)
