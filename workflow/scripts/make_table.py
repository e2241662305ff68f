from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from pathlib import Path  # noqa: E402

from gemsft.report.tables import CAPTIONS, build_table, load_paper, load_summary, write_table  # noqa: E402

sm = snakemake  # noqa: F821
name = sm.wildcards.table
table = build_table(name, load_summary(sm.input.summary), load_paper(sm.input.paper))
write_table(table, Path(sm.output.csv).parent, name, CAPTIONS[name])
from gemsft.files import write_json  # noqa: E402
from gemsft.provenance import artifact_provenance  # noqa: E402

write_json(sm.output.provenance, artifact_provenance(sm.config, [sm.input.summary, sm.input.paper], sm.rule))
