from gemsft.entry import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.config import parse_beta  # noqa: E402
from gemsft.sft import finetune  # noqa: E402

sm = snakemake  # noqa: F821
finetune(sm.params.base, sm.params.data, sm.output.model, sm.params.checkpoints, sm.output.metrics,
         objective_name=sm.wildcards.objective, beta=parse_beta(sm.wildcards.beta), seed=int(sm.wildcards.seed),
         cfg=sm.params.train_cfg)
