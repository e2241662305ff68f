from gemsft.entry import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import io  # noqa: E402
from gemsft.evaluate_chat import write_diversity  # noqa: E402
from gemsft.results import run_fields  # noqa: E402
from gemsft.sample_plan import read_planned_samples  # noqa: E402

sm = snakemake  # noqa: F821
records, samples = read_planned_samples(sm.input.samples, sm.input.data, sm.config["sampling"], "chat",
                                        io.read_jsonl(sm.params.records))
write_diversity(records, samples, sm.output.stage, sm.output.export, run_fields(sm.wildcards), sm.config,
                compat=sm.params.compat, world=sm.params.world)
