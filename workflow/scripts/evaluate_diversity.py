from gemsft.entry import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import io  # noqa: E402
from gemsft.evaluate_chat import sampled_records, write_diversity  # noqa: E402
from gemsft.results import run_fields  # noqa: E402

sm = snakemake  # noqa: F821
samples = io.read_jsonl(sm.input.samples)
records = sampled_records(io.read_jsonl(sm.params.records), samples)
write_diversity(records, samples, sm.output.stage, sm.output.export, run_fields(sm.wildcards), sm.config,
                compat=sm.params.compat, world=sm.params.world)
