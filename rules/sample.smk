# Sampling (Section 6, Appendix E): every fine-tuned model answers each evaluation prompt n times at
# temperature 0.6, top_k 50, top_p 0.9 (chat 32, code 200 per problem, math 16 plus a greedy
# answer). The base model answers the chat prompts in its pretraining frame (Table 2's
# "pre-trained" row), and in the world the math questions too (no paper number; it calibrates the world).
from gemsft.model_loading import loading_settings  # no torch: planning the DAG stays light
from gemsft.sample.base_prompt import base_chat_settings, base_config


ruleorder: sample_base > sample


rule sample:
    input:
        model=run_model_input,
        data=DATA_DIR,
    output:
        **sample_outputs("results/samples/{model}/{objective}/beta-{beta}/seed-{seed}"),
    params:
        model_dir=run_model_dir,
        backend=config["sampling"]["backend"],
        batch_size=config["sampling"]["batch_size"],
        tasks={task: sampling_settings(task) for task in TASKS},
        prompt_format="chat",
        loading=loading_settings(config["model"]),  # dtype and attention on the job's device
    log:
        "results/logs/sample/{model}/{objective}/beta-{beta}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/sample/{model}/{objective}/beta-{beta}/seed-{seed}.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/sample.py"


rule sample_base:
    input:
        model=base_model_input,
        data=DATA_DIR,
    output:
        **base_sample_outputs("results/samples/{model}/base/beta-na/seed-0"),
    params:
        model_dir=base_model_dir,
        backend=config["sampling"]["backend"],
        batch_size=config["sampling"]["batch_size"],
        # sampling.base: the first `prompts` chat prompts after `shots` worked examples (Table 2's 5-shot row).
        # and in the world the math questions (greedy and sampled): the world's math is calibrated on it
        tasks={"chat": base_chat_settings(config["sampling"]),
               **({"math": sampling_settings("math")} if BASE_MATH else {})},
        shots=base_config(config["sampling"])["shots"],
        loading=loading_settings(config["model"]),
    log:
        "results/logs/sample/{model}/base.log",
    benchmark:
        "results/benchmarks/sample/{model}/base.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/sample_base.py"
