from gemsft.entry import start

start(snakemake)  # noqa: F821 - injected by Snakemake
from gemsft import io  # noqa: E402
from gemsft.evaluate_code import humaneval_problems  # noqa: E402
from gemsft.sampling import SamplingSpec, generate, write_samples  # noqa: E402
from gemsft.world import FILES  # noqa: E402

sm = snakemake  # noqa: F821
world = sm.input.world


def prompts_of(task: str, limit: int | None) -> list[dict]:
    if task == "humaneval":
        return [{"id": r["id"], "prompt": r["prompt"]} for r in humaneval_problems(limit)]
    records = io.read_jsonl(f"{world}/{FILES['eval_' + task]}")
    return [{"id": r["id"], "prompt": r["prompt"]} for r in records[:limit]]


for output, path in sm.output.items():
    task = "math" if output == "math_greedy" else output
    settings = dict(sm.params.tasks[task])
    limit = settings.pop("prompts")
    if output == "math_greedy":
        settings.update(n=1, temperature=0.0)  # the greedy answer of Table 4
    spec = SamplingSpec(**settings)
    rows = generate(sm.params.model_dir, prompts_of(task, limit), spec, backend=sm.params.backend,
                    prompt_format=sm.params.prompt_format, batch_size=sm.params.batch_size)
    write_samples(path, rows)
    print(f"{output}: {len(rows)} samples")
