from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import files  # noqa: E402
from gemsft.chat_format import load_tokenizer  # noqa: E402
from gemsft.evaluate.diversity import write_diversity  # noqa: E402
from gemsft.evaluate.stage import run_fields  # noqa: E402
from gemsft.sample.base_prompt import base_sampling  # noqa: E402
from gemsft.sample.plan import read_planned_samples  # noqa: E402

sm = snakemake  # noqa: F821
# The base model's chat samples are planned with sampling.base's prompt count.
records, samples = read_planned_samples(sm.input.samples, sm.input.data, base_sampling(sm.config["sampling"]), "chat",
                                        files.read_jsonl(sm.params.records))
# compat paper_code: the chat template of the official diversity strings.
tokenizer = load_tokenizer(**sm.params.compat_tokenizer) if sm.params.compat_tokenizer else None
write_diversity(records, samples, sm.output.stage, sm.output.export, run_fields(sm.wildcards), sm.config,
                compat=sm.params.compat, world=sm.params.world, tokenizer=tokenizer)
