from gemsft.rule_script import start

# vLLM on a CPU starts its engine processes with spawn, which re-runs this file (as __mp_main__, where
# `snakemake` is not defined): only the job's own process runs the body.
if __name__ == "__main__":
    start(snakemake)  # noqa: F821 - injected by Snakemake
    from gemsft.rule_script import job_gpus
    from gemsft.sample.base_prompt import base_requests, cut_at_next_turn
    from gemsft.sample.generate import generate_requests
    from gemsft.sample.plan import write_samples

    sm = snakemake  # noqa: F821
    # The chat prompts in the pretraining frame after sampling.base.shots worked examples (0: the frame alone).
    requests = base_requests(sm.input.data, sm.params.tasks, list(sm.output.keys()), sm.params.shots)
    rows = generate_requests(sm.params.model_dir, list(requests.values()), backend=sm.params.backend,
                             batch_size=sm.params.batch_size, gpus=job_gpus(sm.resources),
                             loading=sm.params.loading)
    for output, task_rows in zip(requests, rows):
        # After worked examples a base model goes on with a new "Q:" turn of its own: cut it off.
        write_samples(sm.output[output], cut_at_next_turn(task_rows) if sm.params.shots else task_rows)
        print(f"{output}: {len(task_rows)} samples")
