from pathlib import Path

from gemsft.entry import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.forgetting import document_rows, evaluate_tasks, write_world_knowledge_task  # noqa: E402
from gemsft.results import mean_rows, run_fields, write_stage  # noqa: E402

sm = snakemake  # noqa: F821
task_dir = Path(sm.output.lm_eval).parent / "lm_eval_tasks"
task = write_world_knowledge_task(Path(sm.params.records).resolve(), task_dir)
evaluate_tasks(sm.params.model_dir, [task], str(task_dir), sm.output.lm_eval, batch_size=sm.params.batch_size,
               samples_jsonl=sm.output.lm_eval_samples)
per_prompt = document_rows(sm.output.lm_eval_samples, task, "knowledge")
write_stage(sm.output.stage, "knowledge", run_fields(sm.wildcards), mean_rows(per_prompt), per_prompt, sm.config)
