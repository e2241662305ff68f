from gemsft.entry import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import io  # noqa: E402
from gemsft.evaluate_math import evaluate_math  # noqa: E402
from gemsft.results import run_fields, write_stage  # noqa: E402

sm = snakemake  # noqa: F821
samples = io.read_jsonl(sm.input.samples)
ids = {s["prompt_id"] for s in samples}
records = [r for r in io.read_jsonl(sm.params.records) if r["id"] in ids]
rows, per_prompt = evaluate_math(records, io.read_jsonl(sm.input.greedy), samples, compat=sm.params.compat)
write_stage(sm.output.stage, "math", run_fields(sm.wildcards), rows, per_prompt, sm.config)
