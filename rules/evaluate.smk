# Evaluation (Section 6, Appendix F): code pass@k in a sandbox, math accuracy, diversity of the chat
# samples, forgetting on knowledge the SFT data never shows (lm-evaluation-harness), token entropy,
# perplexity and distance from the base model.
from gemsft.model_loading import loading_settings  # no torch: planning the DAG stays light


# The world's code tasks and HumanEval go through the same sandbox in one job.
rule evaluate_code:
    input:
        **{task: f"results/samples/{{model}}/{{objective}}/beta-{{beta}}/seed-{{seed}}/{task}.jsonl"
           for task in CODE_TASKS},
        data=DATA_DIR,
    output:
        **code_outputs("{model}/{objective}/beta-{beta}/seed-{seed}"),
    params:
        tasks=CODE_TASKS,
        records=data_file("eval_code"),
        humaneval_prompts=(config["sampling"]["tasks"].get("humaneval") or {}).get("prompts"),
        pass_k=config["evaluation"]["pass_k"],
        timeout_s=config["evaluation"].get("code_timeout_s", 3.0),
        sandbox=config["evaluation"]["sandbox"],
    log:
        "results/logs/evaluate_code/{model}/{objective}/beta-{beta}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_code/{model}/{objective}/beta-{beta}/seed-{seed}.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/evaluate_code.py"


rule evaluate_math:
    input:
        samples="results/samples/{model}/{objective}/beta-{beta}/seed-{seed}/math.jsonl",
        greedy="results/samples/{model}/{objective}/beta-{beta}/seed-{seed}/math_greedy.jsonl",
        data=DATA_DIR,
    output:
        stage="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/math.json",
    params:
        records=data_file("eval_math"),
        compat=config["evaluation"]["compat"],
    log:
        "results/logs/evaluate_math/{model}/{objective}/beta-{beta}/seed-{seed}.log",
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/evaluate_math.py"


# The base model's chat samples (Table 2's pre-trained row); fine-tuned models' come with their
# reward scores (evaluate_chat).
rule evaluate_diversity:
    input:
        samples="results/samples/{model}/{objective}/beta-{beta}/seed-{seed}/chat.jsonl",
        data=DATA_DIR,
        compat_tokenizer=compat_tokenizer_input,  # compat paper_code: the base model's chat template
    output:
        stage="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/diversity.json",
        export="results/exports/{model}/{objective}/beta-{beta}/seed-{seed}/alpaca_eval_model_outputs.json",
    wildcard_constraints:
        objective=BASE_RUN.objective,
    params:
        records=data_file("eval_chat"),
        compat=config["evaluation"]["compat"],
        compat_tokenizer=compat_tokenizer(),
        world=DATA_SOURCE == "world",
    log:
        "results/logs/evaluate_diversity/{model}/{objective}/beta-{beta}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_diversity/{model}/{objective}/beta-{beta}/seed-{seed}.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/evaluate_diversity.py"


# Both read the model's weights, not its samples, so one job loads the stack once for both.
# Forgetting: lm-eval on the world's knowledge probes, or on the six leaderboard tasks with real data.
rule evaluate_model:
    input:
        model=run_model_input,
        base=base_model_input,
        data=DATA_DIR,
        forgetting=forgetting_input,
    output:
        knowledge="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/knowledge.json",
        lm_eval="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/lm_eval_results.json",
        lm_eval_samples="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/lm_eval_samples.jsonl",
        model_stats="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/model_stats.json",
    params:
        model_dir=run_model_dir,
        base_dir=base_model_dir,
        source=DATA_SOURCE,
        knowledge=data_file("eval_knowledge"),
        leaderboard_limit=config["evaluation"]["leaderboard_limit"],
        lm_eval_batch_size=config["evaluation"].get("lm_eval_batch_size", 16),
        sft_test=data_file("sft_test"),
        eval_chat=data_file("eval_chat"),
        next_token_kind=config["evaluation"]["next_token_kind"],
        loading=loading_settings(config["model"]),  # dtype and attention on the job's device
    log:
        "results/logs/evaluate_model/{model}/{objective}/beta-{beta}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_model/{model}/{objective}/beta-{beta}/seed-{seed}.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/evaluate_model.py"

