from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.config import parse_beta  # noqa: E402
from gemsft.rule_script import job_gpus  # noqa: E402
from gemsft.train.launch import run  # noqa: E402

sm = snakemake  # noqa: F821
# One process per GPU of the job (accelerate launch) when it has several; else in this process.
run("finetune", dict(base_dir=sm.params.base, data_path=sm.params.data, out_dir=sm.output.model,
                     checkpoint_dir=sm.params.checkpoints, metrics_path=sm.output.metrics,
                     objective_name=sm.wildcards.objective, beta=parse_beta(sm.wildcards.beta),
                     seed=int(sm.wildcards.seed), cfg={**sm.params.train_cfg, "keep_checkpoints": sm.config["train"]["keep_checkpoints"]}, loading=sm.params.loading),
    processes=job_gpus(sm.resources))
