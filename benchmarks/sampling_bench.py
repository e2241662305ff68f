"""hf vs vLLM sampling: the same model, prompts and specs, each backend in a fresh process.

Usage: python benchmarks/sampling_bench.py [--model-dir DIR] [--configfile config/config.yaml]
           [--outputs chat] [--backends hf vllm] [--out benchmarks/results/sampling_bench.json]

Samples what the `sample` rule samples for one fine-tuned model, by default the chat task alone
(n = 32 per prompt); `--outputs chat code humaneval math math_greedy` is the whole job (one model load
for all). Backends: hf, vllm, and hf-repeat: hf without the shared prefill (`generate` repeats each
prompt n times before its prefill), whose rows should equal hf's (the table says whether they do).
Per backend it reports the output tokens, output tokens/s of the sampling call
(`generate_requests`: model load, vLLM's engine start and generation; Python imports excluded), the
wall time of the whole process (as a DAG job pays it), and the ratios to the first backend. Run it on an otherwise idle machine; the backends run
one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from stamp import commit_stamp  # benchmarks/ is the script's directory, first on sys.path

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import hashlib, json, sys, time
start = time.perf_counter()
from gemsft.sample.plan import sample_requests, task_settings
from gemsft.sample import generate
import yaml

def main():
    model_dir, configfile, world, backend, outputs = sys.argv[1:6]
    if backend == "hf-repeat":  # hf with generate's own prompt repetition, no shared prefill
        generate.SHARED_PREFILL, backend = False, "hf"
    with open(configfile) as f:
        config = yaml.safe_load(f)
    sampling = config["sampling"]
    settings = {task: task_settings(sampling, task) for task in sampling["tasks"]}
    requests = sample_requests(world, settings, outputs.split(","))
    generation = time.perf_counter()
    rows = generate.generate_requests(model_dir, list(requests.values()), backend=backend,
                             batch_size=sampling["batch_size"])
    print(json.dumps({"seconds": time.perf_counter() - start, "generate_s": time.perf_counter() - generation,
                      "tokens": sum(r["num_tokens"] for task_rows in rows for r in task_rows),
                      "samples": sum(len(task_rows) for task_rows in rows),
                      "rows_sha256": hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()}))

if __name__ == "__main__":
    main()
"""


def run_backend(backend: str, model_dir: str, configfile: str, world: str, outputs: list[str]) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, model_dir, configfile, world, backend, ",".join(outputs)], env=env,
                          capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{backend} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"backend": backend, "wall_s": wall, **result, "tokens_per_s": result["tokens"] / wall,
            "generate_tokens_per_s": result["tokens"] / result["generate_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="results/sft/tiny/gem/beta-0.7/seed-1234/model")
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--world", default="results/data")
    parser.add_argument("--outputs", nargs="+", default=["chat"],
                        help="sample outputs of the job (chat, code, humaneval, math, math_greedy)")
    parser.add_argument("--backends", nargs="+", default=["hf", "vllm"])
    parser.add_argument("--out", default="benchmarks/results/sampling_bench.json")
    args = parser.parse_args()
    if not (REPO / args.model_dir / "config.json").is_file():
        raise SystemExit(f"{args.model_dir}: no trained model; run the workflow first (make run)")
    results = [run_backend(b, args.model_dir, args.configfile, args.world, args.outputs) for b in args.backends]
    first = results[0]
    print(f"outputs: {' '.join(args.outputs)}; model {args.model_dir}")
    print(f"{'backend':10s} {'samples':>8s} {'tokens':>8s} {'call tok/s':>10s} {'x first':>8s} {'wall s':>8s} "
          f"{'x first':>8s}  rows = first's")
    for r in results:
        print(f"{r['backend']:10s} {r['samples']:8d} {r['tokens']:8d} {r['generate_tokens_per_s']:10.0f} "
              f"{r['generate_tokens_per_s'] / first['generate_tokens_per_s']:8.2f} {r['wall_s']:8.1f} "
              f"{r['wall_s'] / first['wall_s']:8.2f}  {'yes' if r['rows_sha256'] == first['rows_sha256'] else 'no'}")
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Paths as seen from the repository, so the result file reads the same on any machine.
    model_dir, world = (os.path.relpath(REPO / p, REPO) for p in (args.model_dir, args.world))
    out.write_text(json.dumps({"commit": commit_stamp().removeprefix("commit "), "model_dir": model_dir,
                               "world": world, "configfile": args.configfile, "outputs": args.outputs,
                               "cpus": os.cpu_count(),
                               "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
