# Supervised fine-tuning (Section 6): the base model on the narrow SFT data with one objective
# (CE, CE + weight decay, NEFT, CE + entropy, GEM linear / log-sigmoid) at one beta and one seed.
# Checkpoints live outside the output so an interrupted run resumes where it stopped.
from gemsft.model_loading import loading_settings  # no torch: planning the DAG stays light


rule trained_models:
    input:
        trained_models(),


rule train:
    input:
        base=base_model_input,
        data=DATA_DIR,
    output:
        model=directory("results/sft/{model}/{objective}/beta-{beta}/seed-{seed}/model"),
        metrics="results/sft/{model}/{objective}/beta-{beta}/seed-{seed}/train_metrics.json",
    params:
        base=base_model_dir,
        data=data_file("sft_train"),
        checkpoints=sft_checkpoint_dir,
        train_cfg=train_settings(),
        loading=loading_settings(config["model"]),  # the base model's attention implementation
    log:
        "results/logs/train/{model}/{objective}/beta-{beta}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/train/{model}/{objective}/beta-{beta}/seed-{seed}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/train.py"
