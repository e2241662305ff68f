from gemsft.rule_script import start

# The judge may be vLLM (vllm_local_completions), which on a CPU starts its engine processes with spawn
# and re-runs this file (as __mp_main__, where `snakemake` is not defined): only the job runs the body.
if __name__ == "__main__":
    start(snakemake)  # noqa: F821 - injected by Snakemake
    from gemsft import files
    from gemsft.evaluate.alpaca_judge import write_alpaca_eval
    from gemsft.evaluate.stage import run_fields

    sm = snakemake  # noqa: F821
    write_alpaca_eval(files.read_jsonl(sm.params.records), files.read_json(sm.input.export), sm.params.settings,
                      sm.output.stage, sm.output.annotations, run_fields(sm.wildcards), sm.config)
