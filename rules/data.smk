# The data every model learns from and is evaluated on, in one directory of fixed file names:
# either the embedded world (a seeded synthetic language whose true answer distributions are known:
# pretraining corpus, narrow SFT data, evaluation sets, preference pairs), or the paper's real
# datasets (UltraFeedback, AlpacaEval, GSM8K, ...) from the local mirror or the hub.


if DATA_SOURCE == "world":

    rule world:
        output:
            directory(DATA_DIR),
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

else:

    # Beside the data files, data_report.json: rows in and out of each file and the rows dropped per
    # reason (a conversation or preference pair with an empty turn), shown by the report's data table.
    rule real_data:
        output:
            directory(DATA_DIR),
        params:
            real=config["data"]["real"],
            mirror=config["data_mirror"],
        log:
            "results/logs/real_data.log",
        benchmark:
            "results/benchmarks/real_data.tsv"
        conda:
            "../envs/eval.yaml"
        script:
            "../workflow/scripts/real_data.py"

    # Forgetting (Section 6.2): the six Open LLM Leaderboard tasks, written once for every model.
    rule leaderboard_tasks:
        output:
            directory(LEADERBOARD_DIR),
        params:
            mirror=config["data_mirror"],
            limit=config["evaluation"]["leaderboard_limit"],
        log:
            "results/logs/leaderboard_tasks.log",
        conda:
            "../envs/eval.yaml"
        script:
            "../workflow/scripts/leaderboard_tasks.py"
