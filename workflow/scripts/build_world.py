from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.data.world import write_world  # noqa: E402

summary = write_world(snakemake.params.world, snakemake.output[0])  # noqa: F821
print(summary["counts"])
