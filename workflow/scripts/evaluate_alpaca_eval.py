from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import files  # noqa: E402
from gemsft.evaluate.alpaca_judge import write_alpaca_eval  # noqa: E402
from gemsft.evaluate.stage import run_fields  # noqa: E402

sm = snakemake  # noqa: F821
write_alpaca_eval(files.read_jsonl(sm.params.records), files.read_json(sm.input.export), sm.params.settings,
                  sm.output.stage, sm.output.annotations, run_fields(sm.wildcards), sm.config)
