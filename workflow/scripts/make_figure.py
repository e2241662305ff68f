from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from pathlib import Path  # noqa: E402

from gemsft import files  # noqa: E402
from gemsft.report.figures import FigureData, draw_figure, save  # noqa: E402
from gemsft.report.figures.plotted import write_plotted  # noqa: E402
from gemsft.provenance import artifact_provenance  # noqa: E402
from gemsft.report.claims import load_claims  # noqa: E402
from gemsft.report.summary_reader import load_summary  # noqa: E402

sm = snakemake  # noqa: F821
summary = load_summary(sm.input.summary) if "summary" in sm.input.keys() else None
stages = [files.read_json(p) for p in sm.input.get("model_stats", [])]
claims = load_claims(sm.input.claims) if "claims" in sm.input.keys() else None
figure = draw_figure(sm.wildcards.figure, FigureData(summary=summary, model_stats=stages, claims=claims),
                     dict(sm.params.options))
stem = Path(sm.output.png).with_suffix("")
save(figure, stem, formats=("png", *[Path(p).suffix[1:] for p in sm.output.other]), dpi=sm.params.dpi)
write_plotted(figure, sm.output.data, sm.wildcards.figure)
files.write_json(sm.output.provenance, artifact_provenance(sm.config, list(sm.input), sm.rule))
