from gemsft.entry import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import io  # noqa: E402
from gemsft.evaluate_chat import chat_quality  # noqa: E402
from gemsft.results import run_fields, write_stage  # noqa: E402
from gemsft.reward import load_reward_model, score  # noqa: E402

sm = snakemake  # noqa: F821
samples = io.read_jsonl(sm.input.samples)
sampled = {s["prompt_id"] for s in samples}
records = [r for r in io.read_jsonl(sm.params.records) if r["id"] in sampled]
by_id = {r["id"]: r for r in records}
model, tokenizer = load_reward_model(sm.params.reward_model)
kwargs = {"batch_size": sm.params.batch_size, "max_length": sm.params.max_length}
sample_rewards = score(model, tokenizer, [by_id[s["prompt_id"]]["prompt"] for s in samples],
                       [s["text"] for s in samples], **kwargs)
reference_rewards = score(model, tokenizer, [r["prompt"] for r in records], [r["reference"] for r in records],
                          **kwargs)
references = {r["id"]: float(x) for r, x in zip(records, reference_rewards)}
io.write_jsonl(sm.output.scores, [{"prompt_id": s["prompt_id"], "sample_index": s["sample_index"], "reward": float(x)}
                                  for s, x in zip(samples, sample_rewards)]
               + [{"prompt_id": pid, "sample_index": None, "reward": x} for pid, x in references.items()])
rows, per_prompt = chat_quality(records, samples, list(sample_rewards), references, sm.params.bon_n,
                                compat=sm.params.compat)
write_stage(sm.output.stage, "chat_quality", run_fields(sm.wildcards), rows, per_prompt, sm.config)
