from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from pathlib import Path  # noqa: E402

from gemsft.files import write_json  # noqa: E402
from gemsft.provenance import artifact_provenance  # noqa: E402
from gemsft.report.claims import load_claims, load_paper  # noqa: E402
from gemsft.report.data_table import data_table, source_file  # noqa: E402
from gemsft.report.summary_reader import load_summary  # noqa: E402
from gemsft.report.table_files import write_table  # noqa: E402
from gemsft.report.tables import DATA, SCOREBOARD, build_table  # noqa: E402

sm = snakemake  # noqa: F821
name = sm.wildcards.table
if name == DATA:  # from the data directory and the runs' training metrics, not the summary
    table = data_table(sm.input.data, list(sm.input.train_metrics), sm.params.length_policy)
    inputs = [source_file(sm.input.data), *sm.input.train_metrics]
elif name == SCOREBOARD:  # from the claims' verdicts alone
    table = build_table(name, None, None, load_claims(sm.input.claims))
    inputs = [sm.input.claims]
else:
    claims = load_claims(sm.input.claims) if "claims" in sm.input.keys() else None
    table = build_table(name, load_summary(sm.input.summary), load_paper(sm.input.paper), claims)
    inputs = [sm.input.summary, sm.input.paper, *([sm.input.claims] if claims is not None else [])]
write_table(table, Path(sm.output.csv).parent, name, sm.params.caption)
write_json(sm.output.provenance, artifact_provenance(sm.config, inputs, sm.rule))
