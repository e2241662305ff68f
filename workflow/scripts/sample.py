from gemsft.rule_script import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft.rule_script import job_gpus  # noqa: E402
from gemsft.sample.plan import sample_requests  # noqa: E402
from gemsft.sample.generate import generate_requests  # noqa: E402
from gemsft.sample.plan import write_samples  # noqa: E402

sm = snakemake  # noqa: F821
requests = sample_requests(sm.input.data, sm.params.tasks, list(sm.output.keys()), sm.params.prompt_format)
# Every task of the model in one call: one model load (one vLLM engine) for all of them.
rows = generate_requests(sm.params.model_dir, list(requests.values()), backend=sm.params.backend,
                         batch_size=sm.params.batch_size, gpus=job_gpus(sm.resources),
                         loading=sm.params.loading)
for output, task_rows in zip(requests, rows):
    write_samples(sm.output[output], task_rows)
    print(f"{output}: {len(task_rows)} samples")
