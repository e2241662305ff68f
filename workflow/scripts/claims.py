from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.report.verdicts import write_claims  # noqa: E402

sm = snakemake  # noqa: F821
rows = write_claims(list(sm.input), sm.output[0], source=sm.params.source, knowledge_tasks=sm.params.knowledge_tasks,
                    n_resamples=sm.params.resamples, level=sm.params.level, seed=sm.params.seed)
for row in rows:
    print(f"{row['model']} {row['id']}: {row['verdict']}" + (f" ({row['reason']})" if row["reason"] else ""))
