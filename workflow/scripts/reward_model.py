from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.score.reward_model import train_reward_model  # noqa: E402

sm = snakemake  # noqa: F821
metrics = train_reward_model(sm.params.base, sm.params.preferences, sm.output.model, sm.output.metrics, sm.params.cfg)
print({k: v for k, v in metrics.items() if "accuracy" in k})
