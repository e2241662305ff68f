from gemsft.entry import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.world import write_world  # noqa: E402

summary = write_world(snakemake.params.world, snakemake.output[0])  # noqa: F821
print(summary["counts"])
