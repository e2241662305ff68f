from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from pathlib import Path  # noqa: E402

from gemsft.files import write_json  # noqa: E402
from gemsft.provenance import artifact_provenance  # noqa: E402
from gemsft.report.claims import load_paper  # noqa: E402
from gemsft.report.summary_reader import load_summary  # noqa: E402
from gemsft.report.table_files import write_table  # noqa: E402
from gemsft.report.tables import build_table  # noqa: E402

sm = snakemake  # noqa: F821
name = sm.wildcards.table
table = build_table(name, load_summary(sm.input.summary), load_paper(sm.input.paper))
write_table(table, Path(sm.output.csv).parent, name, sm.params.caption)
write_json(sm.output.provenance, artifact_provenance(sm.config, [sm.input.summary, sm.input.paper], sm.rule))
