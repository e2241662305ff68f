from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import files  # noqa: E402
from gemsft.evaluate.math_accuracy import evaluate_math  # noqa: E402
from gemsft.evaluate.stage import run_fields, write_stage  # noqa: E402
from gemsft.sample.plan import read_planned_samples  # noqa: E402

sm = snakemake  # noqa: F821
all_records = files.read_jsonl(sm.params.records)
records, samples = read_planned_samples(sm.input.samples, sm.input.data, sm.config["sampling"], "math", all_records)
_, greedy = read_planned_samples(sm.input.greedy, sm.input.data, sm.config["sampling"], "math_greedy", all_records)
rows, per_prompt = evaluate_math(records, greedy, samples, compat=sm.params.compat)
write_stage(sm.output.stage, "math", run_fields(sm.wildcards), rows, per_prompt, sm.config)
