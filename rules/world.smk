# The embedded world: a seeded synthetic language whose true answer distributions are known.
# It emits the pretraining corpus, narrow SFT data, evaluation sets and preference pairs.


rule world:
    output:
        directory("results/world"),
    params:
        world=config["world"],
    log:
        "results/logs/world.log",
    benchmark:
        "results/benchmarks/world.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/build_world.py"
