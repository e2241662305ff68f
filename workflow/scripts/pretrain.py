from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.pretrain.base_model import pretrain  # noqa: E402

sm = snakemake  # noqa: F821
pretrain(sm.params.corpus, sm.output.model, sm.params.checkpoints, sm.params.model_cfg, sm.params.pretrain_cfg,
         sm.output.metrics)
