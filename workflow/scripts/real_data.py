from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.data import mirror_root, write_real_data  # noqa: E402

sm = snakemake  # noqa: F821
summary = write_real_data(sm.params.real, mirror_root(sm.params.mirror), sm.output[0])
print(summary["counts"])
