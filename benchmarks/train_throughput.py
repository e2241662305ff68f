"""Training throughput and peak memory of CE vs GEM through the project's own trainer.

The same `gemsft.train.trainer.ObjectiveTrainer` and `training_arguments` the `train` rule uses train a
randomly initialised model of a real architecture on random tokens at the paper's sequence length,
in bf16 with gradient checkpointing, once per variant, side by side in one process:

  ce          cross-entropy on materialised logits (the baseline)
  gem         GEM (linear, beta 0.7) on materialised logits
  gem_fused   GEM through gemsft.losses.fused_linear_gem_loss (train.fused_loss, the default for GEM)
  ce_fused    CE through fused_linear_ce_loss

Each variant reports tokens/s over the steps after the warm-up and its peak memory
(torch.cuda.max_memory_allocated on a GPU; on a CPU the process' peak RSS growth, which only
increases, so CPU memory columns are upper bounds for later variants). Ratios are to `ce`.

The table (device, torch version and date first) is printed and written as text and JSON to
benchmarks/results/train_throughput_<cuda|cpu>.{txt,json}, so CPU and GPU results stay apart
(--smoke writes only where --out says). --profile runs each variant under torch.profiler and adds
its top operators and kernels by CUDA time (CPU time on a CPU); the profiler slows the steps, so
profile in a run of its own. --require VARIANT:RATIO exits 1, saying so, when VARIANT's tokens/s
is under RATIO x CE's.

    python benchmarks/train_throughput.py                 # GPU: Llama-3.2-1B shape, seq 2048
    python benchmarks/train_throughput.py --smoke         # CPU: a tiny shape, a few steps
    python benchmarks/train_throughput.py --steps 8 --profile --out benchmarks/results/prof_train_cuda.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"ce": ("ce", False), "gem": ("gem", False), "gem_fused": ("gem", True), "ce_fused": ("ce", True)}

# Llama-3.2-1B's shape (the Llama-3 vocabulary of 128,256 tokens): a small real architecture.
GPU_SHAPE = {"vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
             "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": True}
SMOKE_SHAPE = {"vocab_size": 4096, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 1, "num_key_value_heads": 1, "tie_word_embeddings": True}


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, n: int, length: int, vocab: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, length), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.ids[i]}


def _peak_memory_bytes(cuda: bool) -> int:
    if cuda:
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_variant(name: str, shape: dict, seq_len: int, batch: int, steps: int, warmup: int, cuda: bool,
                profile: bool = False) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback, default_data_collator

    from gemsft.objectives import get_objective
    from gemsft.train.trainer import ObjectiveTrainer, training_arguments

    objective, fused = VARIANTS[name]
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**shape, max_position_embeddings=seq_len))
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    before = _peak_memory_bytes(cuda)
    times: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    cfg = {"epochs": 1, "max_steps": steps, "per_device_batch_size": batch, "learning_rate": 1e-5,
           "bf16": cuda, "gradient_checkpointing": True, "logging_steps": max(1, steps // 5),
           "save_steps": 10 ** 9, "warmup_ratio": 0.0}
    with tempfile.TemporaryDirectory() as out:
        args = training_arguments(cfg, out, seed=0)
        args.save_strategy = "no"
        trainer = ObjectiveTrainer(model=model, args=args, objective=get_objective(objective),
                                   beta=0.7 if objective == "gem" else None, fused_loss=fused,
                                   train_dataset=RandomTokens(steps * batch, seq_len, shape["vocab_size"]),
                                   data_collator=default_data_collator, callbacks=[StepTimes()])
        profiler = _profiler(cuda) if profile else contextlib.nullcontext()
        with profiler:
            trainer.train()
            if cuda:
                torch.cuda.synchronize()
    times.append(time.perf_counter())
    timed = times[warmup:]
    seconds = timed[-1] - timed[0]
    tokens = (len(timed) - 1) * batch * seq_len
    peak = _peak_memory_bytes(cuda) - (0 if cuda else before)
    del trainer, model
    result = {"variant": name, "tokens_per_s": tokens / seconds, "peak_memory_gib": peak / 2 ** 30,
              "timed_steps": len(timed) - 1}
    if profile:
        result["profile"] = profiler.key_averages().table(
            sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=15, max_name_column_width=70)
    return result


def _profiler(cuda: bool):
    from torch.profiler import ProfilerActivity, profile

    return profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []))


def unmet(results: list[dict], required: dict[str, float]) -> list[str]:
    """One line per required variant whose tokens/s is under its ratio to CE's (or that did not run)."""
    ratios = {r["variant"]: r["throughput_ratio"] for r in results}
    return [f"{name} at {ratios[name]:.3f}x CE tokens/s, under the required {ratio}x" if name in ratios
            else f"{name}: required at {ratio}x CE tokens/s but not run"
            for name, ratio in required.items() if ratios.get(name, -1.0) < ratio]


def _requirement(text: str) -> tuple[str, float]:
    name, _, ratio = text.partition(":")
    if name not in VARIANTS:
        raise argparse.ArgumentTypeError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return name, float(ratio)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a tiny shape on CPU: checks the script runs")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None, help="sequences per step")
    parser.add_argument("--seq-len", type=int, default=None)
    parser.add_argument("--variants", default="ce,gem,gem_fused,ce_fused")
    parser.add_argument("--out", type=Path, default=None,
                        help="the JSON result (the text table beside it, .txt); default "
                             "benchmarks/results/train_throughput_<cuda|cpu>.json, none with --smoke")
    parser.add_argument("--profile", action="store_true", help="add each variant's top ops/kernels (torch.profiler)")
    parser.add_argument("--require", type=_requirement, action="append", default=[], metavar="VARIANT:RATIO",
                        help="exit 1 if VARIANT's tokens/s is under RATIO x CE's (repeatable)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.smoke
    shape = SMOKE_SHAPE if args.smoke else GPU_SHAPE
    seq_len = args.seq_len or (64 if args.smoke else 2048)  # the paper's max length
    batch = args.batch or (2 if args.smoke else 4)
    steps = args.steps or (6 if args.smoke else 120)
    warmup = 2 if args.smoke else 10
    results = [run_variant(v, shape, seq_len, batch, steps, warmup, cuda, args.profile)
               for v in args.variants.split(",")]
    base = next((r for r in results if r["variant"] == "ce"), results[0])
    import transformers
    from stamp import commit_stamp, cpu_name

    kind = "cuda" if cuda else "cpu"
    device = torch.cuda.get_device_name() if cuda else f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    commit = commit_stamp()
    lines = [f"device: {device}; torch {torch.__version__}; transformers {transformers.__version__}; {date}; {commit}",
             f"shape {shape}; seq {seq_len} x batch {batch}; {steps} steps ({warmup} warm-up)"
             + ("; under torch.profiler (slower)" if args.profile else ""),
             f"{'variant':<10} {'tokens/s':>12} {'x ce':>6} {'peak GiB':>9} {'x ce':>6}"]
    for r in results:
        r["throughput_ratio"] = r["tokens_per_s"] / base["tokens_per_s"]
        r["memory_ratio"] = r["peak_memory_gib"] / base["peak_memory_gib"] if base["peak_memory_gib"] else None
        memory_ratio = f"{r['memory_ratio']:6.2f}" if r["memory_ratio"] is not None else "     -"
        lines.append(f"{r['variant']:<10} {r['tokens_per_s']:12.0f} {r['throughput_ratio']:6.3f} "
                     f"{r['peak_memory_gib']:9.2f} {memory_ratio}")
    for r in results:
        if "profile" in r:
            lines += ["", f"=== {r['variant']}: top ops and kernels by {kind.upper()} time", r["profile"]]
    failed = unmet(results, dict(args.require))
    lines += [f"FAILED: {line}" for line in failed]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    out = args.out or (None if args.smoke else RESULTS / f"train_throughput_{kind}.json")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"device": device, "device_kind": kind, "torch": torch.__version__,
                                   "transformers": transformers.__version__, "date": date, "commit": commit.removeprefix("commit "), "shape": shape,
                                   "seq_len": seq_len, "batch": batch, "steps": steps, "profiled": args.profile,
                                   "results": results}, indent=2) + "\n")
        out.with_suffix(".txt").write_text(text)
    if failed:
        print("\n".join(f"FAILED: {line}" for line in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
