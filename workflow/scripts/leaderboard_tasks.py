from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.data import mirror_root  # noqa: E402
from gemsft.data.leaderboard import write_leaderboard_tasks  # noqa: E402

sm = snakemake  # noqa: F821
mirror = mirror_root(sm.params.mirror)
# A mirror's converted files are cut here; the hub's documents are cut by lm-eval (evaluate_model).
tasks = write_leaderboard_tasks(sm.output[0], mirror, limit=sm.params.limit if mirror else None)
print(tasks)
