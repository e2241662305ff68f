from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from pathlib import Path  # noqa: E402

from gemsft import files  # noqa: E402
from gemsft.data import mirror_root, write_real_data  # noqa: E402
from gemsft.data.write import DATA_REPORT  # noqa: E402

sm = snakemake  # noqa: F821
summary = write_real_data(sm.params.real, mirror_root(sm.params.mirror), sm.output[0])
print(summary["counts"])
for name, entry in files.read_json(Path(sm.output[0]) / DATA_REPORT)["files"].items():
    if entry["dropped"]:
        print(f"{name}: dropped {entry['dropped']} of {entry['rows_in']} rows: {entry['dropped_ids']}")
