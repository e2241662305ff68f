from gemsft.rule_script import start

# vLLM on a CPU starts its engine processes with spawn, which re-runs this file (as __mp_main__, where
# `snakemake` is not defined): only the job's own process runs the body.
if __name__ == "__main__":
    start(snakemake)  # noqa: F821 - injected by Snakemake
    from gemsft.rule_script import job_gpus
    from gemsft.sample.plan import sample_requests
    from gemsft.sample.generate import generate_requests
    from gemsft.sample.plan import write_samples

    sm = snakemake  # noqa: F821
    requests = sample_requests(sm.input.data, sm.params.tasks, list(sm.output.keys()), sm.params.prompt_format)
    # Every task of the model in one call: one model load (one vLLM engine) for all of them.
    rows = generate_requests(sm.params.model_dir, list(requests.values()), backend=sm.params.backend,
                             batch_size=sm.params.batch_size, gpus=job_gpus(sm.resources),
                             loading=sm.params.loading)
    for output, task_rows in zip(requests, rows):
        write_samples(sm.output[output], task_rows)
        print(f"{output}: {len(task_rows)} samples")
