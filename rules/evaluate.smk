# Evaluation (Section 6, Appendix F): code pass@k in a sandbox, math accuracy, diversity of the chat
# samples, forgetting on knowledge the SFT data never shows (lm-evaluation-harness), token entropy,
# perplexity and distance from the base model; all gathered into one tidy table.


# The world's code tasks and HumanEval go through the same sandbox in one job.
rule evaluate_code:
    input:
        code="results/samples/{model}/{objective}/beta-{beta}/seed-{seed}/code.jsonl",
        humaneval="results/samples/{model}/{objective}/beta-{beta}/seed-{seed}/humaneval.jsonl",
        world="results/world",
    output:
        code="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/code.json",
        humaneval="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/humaneval.json",
        code_executions="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/code_executions.jsonl",
        humaneval_executions="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/humaneval_executions.jsonl",
        code_export="results/exports/{model}/{objective}/beta-{beta}/seed-{seed}/code_samples.jsonl",
        humaneval_export="results/exports/{model}/{objective}/beta-{beta}/seed-{seed}/humaneval_samples.jsonl",
    params:
        records=world_file("eval_code"),
        humaneval_prompts=config["sampling"]["tasks"]["humaneval"].get("prompts"),
        pass_k=config["evaluation"]["pass_k"],
        timeout_s=config["evaluation"].get("code_timeout_s", 3.0),
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
        world="results/world",
    output:
        stage="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/math.json",
    params:
        records=world_file("eval_math"),
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
        world="results/world",
    output:
        stage="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/diversity.json",
        export="results/exports/{model}/{objective}/beta-{beta}/seed-{seed}/alpaca_eval_model_outputs.json",
    wildcard_constraints:
        objective=BASE_RUN.objective,
    params:
        records=world_file("eval_chat"),
        compat=config["evaluation"]["compat"],
    log:
        "results/logs/evaluate_diversity/{model}/{objective}/beta-{beta}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_diversity/{model}/{objective}/beta-{beta}/seed-{seed}.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/evaluate_diversity.py"


# Both read the model's weights, not its samples, so one job loads the stack once for both.
rule evaluate_model:
    input:
        model=run_model_input,
        base=base_model_input,
        world="results/world",
    output:
        knowledge="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/knowledge.json",
        lm_eval="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/lm_eval_results.json",
        lm_eval_samples="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/lm_eval_samples.jsonl",
        model_stats="results/eval/{model}/{objective}/beta-{beta}/seed-{seed}/model_stats.json",
    params:
        model_dir=run_model_dir,
        base_dir=base_model_dir,
        knowledge=world_file("eval_knowledge"),
        lm_eval_batch_size=config["evaluation"].get("lm_eval_batch_size", 16),
        sft_test=world_file("sft_test"),
        eval_chat=world_file("eval_chat"),
        next_token_kind=config["evaluation"]["next_token_kind"],
    log:
        "results/logs/evaluate_model/{model}/{objective}/beta-{beta}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_model/{model}/{objective}/beta-{beta}/seed-{seed}.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/evaluate_model.py"


rule metrics_table:
    input:
        stage_outputs(),
    output:
        "results/metrics.csv",
    log:
        "results/logs/metrics_table.log",
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/metrics_table.py"
