from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.report.summary import write_summary  # noqa: E402

sm = snakemake  # noqa: F821
n = write_summary(list(sm.input), sm.output[0], n_resamples=sm.params.resamples, level=sm.params.level,
                  seed=sm.params.seed)
print(f"{n} summary rows")
