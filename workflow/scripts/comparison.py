from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import files  # noqa: E402
from gemsft.report.comparison import VERDICT, compare_objectives, read_stages, write_csv  # noqa: E402

sm = snakemake  # noqa: F821
# The margin is the module's constant, fixed before any result (gemsft.report.comparison), not a setting.
rows = compare_objectives(read_stages(list(sm.input.stages)), source=sm.params.source,
                          knowledge_tasks=sm.params.knowledge_tasks, n_resamples=sm.params.resamples,
                          level=sm.params.level, seed=sm.params.seed)
with files.atomic_path(sm.output[0]) as tmp:
    write_csv(rows, tmp)
for row in rows:
    if row["measure"] == VERDICT:
        print(f"{row['model']} {row['arm']}: {row['verdict']} ({row['reason']})")
