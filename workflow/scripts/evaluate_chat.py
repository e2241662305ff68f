"""Chat samples of a fine-tuned model: reward scores, best-of-N and win rate, and diversity, in one
job (one load of the transformers stack for the reward model and Sentence-BERT)."""
from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import files  # noqa: E402
from gemsft.chat_format import load_tokenizer  # noqa: E402
from gemsft.score.chat_quality import write_chat_quality  # noqa: E402
from gemsft.evaluate.diversity import write_diversity  # noqa: E402
from gemsft.evaluate.stage import run_fields  # noqa: E402
from gemsft.sample.plan import read_planned_samples  # noqa: E402

sm = snakemake  # noqa: F821
records, samples = read_planned_samples(sm.input.samples, sm.input.data, sm.config["sampling"], "chat",
                                        files.read_jsonl(sm.params.records))
run = run_fields(sm.wildcards)
# compat paper_code: the official diversity strings' chat template and the reward input's detokenizer.
tokenizer = load_tokenizer(**sm.params.compat_tokenizer) if sm.params.compat_tokenizer else None
write_chat_quality(records, samples, sm.params.reward_model, sm.output.scores, sm.output.chat_quality, run, sm.config,
                   sm.params.bon_n, sm.params.batch_size, sm.params.max_length, compat=sm.params.compat,
                   loading=sm.params.loading, reward_metrics=sm.params.reward_metrics, detokenizer=tokenizer)
write_diversity(records, samples, sm.output.diversity, sm.output.export, run, sm.config, compat=sm.params.compat,
                world=sm.params.world, tokenizer=tokenizer)
