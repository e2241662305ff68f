from gemsft.entry import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import io  # noqa: E402
from gemsft.evaluate_chat import chat_diversity, group_samples  # noqa: E402
from gemsft.results import run_fields, write_stage  # noqa: E402

sm = snakemake  # noqa: F821
samples = io.read_jsonl(sm.input.samples)
records = [r for r in io.read_jsonl(sm.params.records) if r["id"] in {s["prompt_id"] for s in samples}]
rows, per_prompt = chat_diversity(records, samples, compat=sm.params.compat)
write_stage(sm.output.stage, "diversity", run_fields(sm.wildcards), rows, per_prompt, sm.config)
# alpaca_eval's model_outputs.json (the first sample of each prompt), for its official annotators.
groups = group_samples(samples)
generator = f"gemsft-{sm.wildcards.model}-{sm.wildcards.objective}-beta{sm.wildcards.beta}-seed{sm.wildcards.seed}"
io.write_json(sm.output.export, [{"instruction": r["prompt"], "output": groups[r["id"]][0]["text"],
                                  "generator": generator, "dataset": "gemsft_world"} for r in records])
