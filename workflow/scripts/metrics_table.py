from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.report.metrics_table import write_metrics_table  # noqa: E402

n = write_metrics_table(list(snakemake.input), snakemake.output[0])  # noqa: F821
print(f"{n} rows")
