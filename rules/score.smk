# Reward model and best-of-N (Section 6, Table 3, Figure 7a): a Bradley-Terry reward model scores
# every sampled chat response and the reference answer; best-of-N is the expected reward of the best
# of N samples over all size-N subsets, and the win rate is P(best beats the reference). In the world
# the same is computed under its oracle reward (the answers' true quality), beside the trained reward
# model's held-out accuracy.
from gemsft.model_loading import loading_settings  # no torch: planning the DAG stays light


rule reward_model:
    input:
        base=base_model_input,
        data=DATA_DIR,
    output:
        model=directory("results/reward_model/{model}"),
        metrics="results/reward_model/{model}.metrics.json",
    params:
        base=base_model_dir,
        preferences=data_file("preferences"),
        cfg=config["reward_model"],
    log:
        "results/logs/reward_model/{model}.log",
    benchmark:
        "results/benchmarks/reward_model/{model}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/reward_model.py"


# The same job measures the diversity of the samples it scores (Table 2, Figure 6). The base model's
# samples get diversity only (evaluate_diversity).
ruleorder: evaluate_diversity > evaluate_chat


rule evaluate_chat:
    input:
        reward_model=reward_model_input,
        reward_metrics=reward_model_metrics_input,
        samples="results/samples/{model}/{objective}/beta-{beta}/seed-{seed}/chat.jsonl",
        data=DATA_DIR,
        compat_tokenizer=compat_tokenizer_input,  # compat paper_code: the base model's chat template
    output:
        scores="results/scores/{model}/{objective}/beta-{beta}/seed-{seed}/chat.jsonl",
        chat_quality="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/chat_quality.json",
        diversity="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/diversity.json",
        export="results/exports/{model}/{objective}/beta-{beta}/seed-{seed}/alpaca_eval_model_outputs.json",
    params:
        reward_model=reward_model_dir,
        reward_metrics=reward_model_metrics(),
        records=data_file("eval_chat"),
        world=DATA_SOURCE == "world",
        bon_n=config["evaluation"]["bon_n"],
        compat=config["evaluation"]["compat"],
        compat_tokenizer=compat_tokenizer(),
        batch_size=config["reward_model"].get("batch_size", 32),
        max_length=config["reward_model"].get("max_length", 2048),
        loading=loading_settings(config["reward_model"]),  # dtype and attention on the job's device
    log:
        "results/logs/evaluate_chat/{model}/{objective}/beta-{beta}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_chat/{model}/{objective}/beta-{beta}/seed-{seed}.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/evaluate_chat.py"


# AlpacaEval's own judge (evaluation.alpaca_eval, off by default): alpaca_eval's annotator compares
# each prompt's exported output with its reference output, and its win rate joins the tidy results.
rule alpaca_eval:
    input:
        export="results/exports/{model}/{objective}/beta-{beta}/seed-{seed}/alpaca_eval_model_outputs.json",
        data=DATA_DIR,
    output:
        stage="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/alpaca_eval.json",
        annotations="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/alpaca_eval_annotations.json",
    params:
        records=data_file("eval_chat"),
        settings=config["evaluation"].get("alpaca_eval"),
    log:
        "results/logs/alpaca_eval/{model}/{objective}/beta-{beta}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/alpaca_eval/{model}/{objective}/beta-{beta}/seed-{seed}.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/evaluate_alpaca_eval.py"
