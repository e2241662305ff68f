# The base model (Section 6 uses Llama-3.1-8B): here a BPE tokenizer and a tiny Llama trained from
# scratch with cross-entropy on the world's corpus, saved like a hub model.


rule pretrain:
    input:
        DATA_DIR,
    output:
        model=directory("results/base/{model}"),
        metrics="results/base/{model}.metrics.json",
    params:
        corpus=data_file("pretrain"),
        checkpoints="results/checkpoints/pretrain/{model}",
        model_cfg=config["model"],
        pretrain_cfg=config["pretrain"],
    log:
        "results/logs/pretrain/{model}.log",
    benchmark:
        "results/benchmarks/pretrain/{model}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/pretrain.py"
