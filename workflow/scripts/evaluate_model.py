from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.evaluate.model_eval import evaluate_model  # noqa: E402
from gemsft.evaluate.stage import run_fields  # noqa: E402

sm = snakemake  # noqa: F821
forgetting_dir = sm.input.forgetting[0] if sm.params.source != "world" else None
evaluate_model(run_fields(sm.wildcards), sm.config, sm.params.model_dir, sm.params.base_dir, sm.params.source,
               sm.params.knowledge, forgetting_dir, sm.params.sft_test, sm.params.eval_chat,
               sm.params.next_token_kind, sm.params.lm_eval_batch_size, sm.params.leaderboard_limit, sm.output,
               loading=sm.params.loading)
