"""Forward + backward of the LM-head losses: torch CE, GEM as in Listing 1, gem_loss, fused GEM, DFT, EAFT.

Usage: python benchmarks/loss_bench.py [--reps 3] [--out benchmarks/results/loss_bench_cpu.txt]
       python benchmarks/loss_bench.py --tokens 512 --vocab 8000 --hidden 256   (one small CPU size)
       python benchmarks/loss_bench.py --device cuda [--dtype bfloat16] [--tokens 2048 8192]

On 2 CPU cores the default run took about 6 minutes with the first four variants (the four DFT and
EAFT ones, added later, add more: not yet timed) and needs ~10 GB of free memory (Listing 1
peaks at 9 GiB at the second size).

Every variant starts from the same ``hidden`` (N, H) and head ``weight`` (V, H), both requiring
grad, with N unmasked target tokens, and runs one forward + backward down to ``hidden.grad`` and
``weight.grad``:

* ``torch_ce``: ``F.cross_entropy(hidden @ weight.T, labels)``, the reference of every ratio;
* ``listing1``: :func:`gemsft.losses.gem_listing1_loss` (the paper's Listing 1, which shifts
  inside, so it gets N + 1 rows to train on N tokens) on the materialised logits;
* ``gem_loss``: :func:`gemsft.losses.gem_loss` on the materialised logits;
* ``fused_gem``: :func:`gemsft.losses.fused_linear_gem_loss`, which never holds the (N, V) logits;
* ``dft_loss``, ``eaft_loss``: :func:`gemsft.losses.dft_loss` and :func:`gemsft.losses.eaft_loss`
  (alpha = 1) on the materialised logits (what ``train.fused_loss: auto`` would compare against);
* ``fused_dft``, ``fused_eaft``: :func:`gemsft.losses.fused_linear_dft_loss` and
  :func:`gemsft.losses.fused_linear_eaft_loss` (alpha = 1), CE weighted per token by a weight each
  chunk computes from its own logits, never holding the (N, V) logits.

GEM runs with beta = 0.7 and h = linear. Sizes on CPU: N=4096, V=32000, H=1024 (a Llama-2 vocabulary)
and N=2048, V=128256, H=1024 (Llama-3's), float32.

What is measured, on CPU:

* time: median wall time of one forward + backward over ``--reps`` rounds (after a warm-up on an
  eighth of the tokens); the variants of a size take turns inside one process (round robin), so a
  load that comes and goes on the machine hits them alike;
* peak memory: each variant runs one step in a fresh process. ``mem`` is the peak of the bytes of live
  CPU tensors allocated during the forward + backward, above what was live before it (the running
  "Total Allocated" of torch.profiler's memory events, which PyTorch's CPU allocator reports for
  every tensor allocation and free: the tensor-level analogue of tracemalloc, independent of how
  malloc reuses or returns memory). It includes the gradients the step produces (``weight.grad`` is
  V x H). ``rss`` cross-checks it with the operating system's view: the rise of the process's peak
  resident set (VmHWM, reset through /proc/self/clear_refs just before the step) over the resident
  set before it, with glibc told to serve every block over 128 KiB by mmap so that freed memory
  leaves the process at once and is not reused unseen (it includes the profiler's own few MiB).

On CUDA (``--device cuda``, for a prepared GPU script) the variants are torch_ce, listing1,
fused_gem, fused_dft and fused_eaft (and gem_loss; dft_loss and eaft_loss with ``--variants``) at
V=128256, H=1024 (``--hidden``/``--tokens`` to change), all in this
process: peak memory is ``torch.cuda.max_memory_allocated()`` above ``memory_allocated()`` before the
step (reset between variants), time the median of CUDA-synchronised wall times.

Ratios are to torch_ce of the same size. Targets (CPU): fused_gem time <= 1.0x and memory <= 0.4x;
gem_loss time <= 1.15x and memory <= 1.1x; fused_dft and fused_eaft time <= 1.1x and memory <= 0.4x
at N=4096, V=32000, H=1024 (issue 16; no target at the other size). The result file (header:
device, torch version, date) is
benchmarks/results/loss_bench_<cpu|cuda>[_<dtype>].txt, the dtype named unless float32, so results
of different devices never overwrite each other.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stamp import commit_stamp, cpu_name  # benchmarks/ is the script's directory, first on sys.path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

CPU_SIZES = [(4096, 32000, 1024), (2048, 128256, 1024)]
CPU_VARIANTS = ["torch_ce", "listing1", "gem_loss", "fused_gem", "dft_loss", "fused_dft", "eaft_loss", "fused_eaft"]
CUDA_VARIANTS = ["torch_ce", "listing1", "gem_loss", "fused_gem", "fused_dft", "fused_eaft"]  # + --variants
BETA = 0.7
EAFT_ALPHA = 1.0  # the official (and the objective's) default
# (time, memory) as ratios to torch_ce, and the (N, V, H) the target is set at (None: every size)
TARGETS = {
    "fused_gem": (1.0, 0.4, None),
    "gem_loss": (1.15, 1.1, None),
    "fused_dft": (1.1, 0.4, (4096, 32000, 1024)),
    "fused_eaft": (1.1, 0.4, (4096, 32000, 1024)),
}


# --------------------------------------------------------------------------- the variants


def make_inputs(n, v, h, device="cpu", dtype="float32", seed=0):
    import torch

    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(seed)
    # N + 1 rows: Listing 1 shifts inside; every other variant uses the first N rows.
    hidden = torch.randn(n + 1, h, generator=g)
    weight = torch.randn(v, h, generator=g) * (2.0 / h**0.5)  # logits with std ~2, as a trained head's
    labels = torch.randint(0, v, (n + 1,), generator=g)
    hidden = hidden.to(device=device, dtype=dt).requires_grad_()
    weight = weight.to(device=device, dtype=dt).requires_grad_()
    return hidden, weight, labels.to(device)


def step(variant, hidden, weight, labels):
    """One forward + backward; leaves hidden.grad and weight.grad set."""
    import torch.nn.functional as F

    from gemsft.losses import fused_linear_gem_loss, gem_listing1_loss, gem_loss

    n = hidden.shape[0] - 1
    if variant == "torch_ce":
        loss = F.cross_entropy(hidden[:n] @ weight.T, labels[1:])
    elif variant == "listing1":
        loss = gem_listing1_loss((hidden @ weight.T).unsqueeze(0), labels.unsqueeze(0), beta=BETA)
    elif variant == "gem_loss":
        loss = gem_loss(hidden[:n] @ weight.T, labels[1:], beta=BETA)
    elif variant == "fused_gem":
        loss = fused_linear_gem_loss(hidden[:n], weight, labels[1:], beta=BETA)
    elif variant == "fused_ce":
        from gemsft.losses import fused_linear_ce_loss

        loss = fused_linear_ce_loss(hidden[:n], weight, labels[1:])
    elif variant == "dft_loss":
        from gemsft.losses import dft_loss

        loss = dft_loss(hidden[:n] @ weight.T, labels[1:])
    elif variant == "fused_dft":
        from gemsft.losses import fused_linear_dft_loss

        loss = fused_linear_dft_loss(hidden[:n], weight, labels[1:])
    elif variant == "eaft_loss":
        from gemsft.losses import eaft_loss

        loss = eaft_loss(hidden[:n] @ weight.T, labels[1:], alpha=EAFT_ALPHA)
    elif variant == "fused_eaft":
        from gemsft.losses import fused_linear_eaft_loss

        loss = fused_linear_eaft_loss(hidden[:n], weight, labels[1:], alpha=EAFT_ALPHA)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    loss.backward()
    return loss


def clear(hidden, weight):
    hidden.grad = None
    weight.grad = None


# --------------------------------------------------------------------------- CPU workers


def worker_time(args) -> dict:
    import torch

    # Warm-up on an eighth of the tokens: libraries and thread pools start, nothing is timed.
    small = make_inputs(max(1, args.tokens // 8), args.vocab, args.hidden, dtype=args.dtype)
    for variant in args.variants:
        step(variant, *small)
    del small
    hidden, weight, labels = make_inputs(args.tokens, args.vocab, args.hidden, dtype=args.dtype)
    times = {v: [] for v in args.variants}
    for _ in range(args.reps):
        for variant in args.variants:
            clear(hidden, weight)
            start = time.perf_counter()
            step(variant, hidden, weight, labels)
            times[variant].append(time.perf_counter() - start)
    return {"times": times, "threads": torch.get_num_threads()}


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker_mem(args) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    hidden, weight, labels = make_inputs(args.tokens, args.vocab, args.hidden, dtype=args.dtype)
    (variant,) = args.variants
    # One step, the first of this process: its peak live tensor bytes from the profiler's allocation
    # events, and the peak rise of the resident set over the step.
    clear(hidden, weight)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        before = _rss_bytes("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        step(variant, hidden, weight, labels)
        rss_peak = _rss_bytes("VmHWM") - before
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    memory = sorted((e["args"] for e in events
                     if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type") == 0),
                    key=lambda a: a["Ev Idx"])
    base = memory[0]["Total Allocated"] - memory[0]["Bytes"]  # the running total before the step
    return {"mem": max(a["Total Allocated"] for a in memory) - base, "rss": rss_peak}


def run_worker(kind: str, n, v, h, variants, reps, dtype) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024), "PYTHONPATH": str(REPO / "workflow")}
    cmd = [sys.executable, __file__, "--worker", kind, "--tokens", str(n), "--vocab", str(v),
           "--hidden", str(h), "--reps", str(reps), "--dtype", dtype, "--variants", *variants]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"worker {kind} {variants} at N={n} V={v} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- CUDA


def run_cuda(args) -> list[dict]:
    import torch

    rows = []
    for n in args.tokens_list:
        hidden, weight, labels = make_inputs(n, args.vocab, args.hidden, device="cuda", dtype=args.dtype)
        for variant in args.variants:
            try:
                clear(hidden, weight)
                step(variant, hidden, weight, labels)  # warm-up
                clear(hidden, weight)
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                step(variant, hidden, weight, labels)
                torch.cuda.synchronize()
                mem = torch.cuda.max_memory_allocated() - base
                times = []
                for _ in range(args.reps):
                    clear(hidden, weight)
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    step(variant, hidden, weight, labels)
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - start)
                rows.append({"n": n, "v": args.vocab, "h": args.hidden, "variant": variant,
                             "time": statistics.median(times), "mem": mem, "rss": None})
            except torch.OutOfMemoryError:
                rows.append({"n": n, "v": args.vocab, "h": args.hidden, "variant": variant,
                             "time": None, "mem": None, "rss": None, "oom": True})
            clear(hidden, weight)
            torch.cuda.empty_cache()
        del hidden, weight, labels
    return rows


# --------------------------------------------------------------------------- report


def table(rows: list[dict], cpu: bool) -> list[str]:
    """One line per row; on CPU with the rss columns and the targets."""
    lines = []
    header = f"{'N':>5} {'V':>6} {'H':>5}  {'variant':<10} {'time ms':>9} {'x CE':>6} {'mem MiB':>9} {'x CE':>6}"
    if cpu:
        header += f" {'rss MiB':>9} {'x CE':>6}  target (time, mem)"
    lines.append(header)
    ref = {(r["n"], r["v"]): r for r in rows if r["variant"] == "torch_ce"}

    def ratio(x, y):
        return f"{x / y:6.2f}" if x is not None and y else f"{'-':>6}"

    for r in rows:
        base = ref.get((r["n"], r["v"]), {})
        mib = lambda b: f"{b / 2**20:9.0f}" if b is not None else f"{'OOM' if r.get('oom') else '-':>9}"  # noqa: E731
        t = f"{r['time'] * 1e3:9.1f}" if r["time"] is not None else f"{'-':>9}"
        line = (f"{r['n']:>5} {r['v']:>6} {r['h']:>5}  {r['variant']:<10} {t} {ratio(r['time'], base.get('time'))}"
                f" {mib(r['mem'])} {ratio(r['mem'], base.get('mem'))}")
        if cpu:
            line += f" {mib(r['rss'])} {ratio(r['rss'], base.get('rss'))}"
        target = TARGETS.get(r["variant"]) if cpu else None
        if target and target[2] is not None and target[2] != (r["n"], r["v"], r["h"]):
            target = None  # set at another size only
        if target and r["time"] is not None and base.get("time"):
            ok = r["time"] / base["time"] <= target[0] and r["mem"] / base["mem"] <= target[1]
            line += f"  <= {target[0]}x, <= {target[1]}x: {'met' if ok else 'MISSED'}"
        lines.append(line)
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 3 on CPU, 10 on CUDA)")
    p.add_argument("--variants", nargs="+", default=None)
    p.add_argument("--tokens", type=int, nargs="+", dest="tokens_list", default=None,
                   help="CUDA: token counts (default 2048 8192)")
    p.add_argument("--vocab", type=int, default=128256, help="CUDA: vocabulary size")
    p.add_argument("--hidden", type=int, default=1024, help="CUDA: hidden size")
    p.add_argument("--out", type=Path, default=None,
                   help="result file (default benchmarks/results/loss_bench_<device>[_<dtype>].txt)")
    p.add_argument("--worker", choices=["time", "mem"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        args.tokens = args.tokens_list[0]
        fn = worker_time if args.worker == "time" else worker_mem
        print(json.dumps(fn(args)))
        return

    import torch

    started = time.perf_counter()
    if args.device == "cuda":
        args.reps = args.reps or 10
        args.variants = args.variants or CUDA_VARIANTS
        args.tokens_list = args.tokens_list or [2048, 8192]
        rows = run_cuda(args)
        device = torch.cuda.get_device_name()
        threads = None
    else:
        args.reps = args.reps or 3
        args.variants = args.variants or CPU_VARIANTS
        sizes = CPU_SIZES if args.tokens_list is None else [(n, args.vocab, args.hidden) for n in args.tokens_list]
        rows = []
        for n, v, h in sizes:
            timed = run_worker("time", n, v, h, args.variants, args.reps, args.dtype)
            threads = timed["threads"]
            for variant in args.variants:
                mem = run_worker("mem", n, v, h, [variant], 0, args.dtype)
                rows.append({"n": n, "v": v, "h": h, "variant": variant,
                             "time": statistics.median(timed["times"][variant]), **mem,
                             "times": timed["times"][variant]})
                print(f"  N={n} V={v} {variant}: {rows[-1]['time']:.3f} s, "
                      f"{mem['mem'] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
        device = cpu_name()

    lines = [
        f"loss_bench.py --device {args.device} --dtype {args.dtype}: forward + backward to hidden and weight, "
        f"GEM beta={BETA} h=linear, EAFT alpha={EAFT_ALPHA}",
        f"device: {device}; torch {torch.__version__}; {commit_stamp()}"
        + (f"; {threads} threads; {os.cpu_count()} CPUs" if threads else "")
        + f"; {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}"
        + f"; median of {args.reps} rounds; total bench time {time.perf_counter() - started:.0f} s",
        "mem: peak live tensor bytes of one step above the inputs (CPU: torch.profiler memory events;"
        " CUDA: max_memory_allocated)" + ("; rss: peak resident-set rise of the step (fresh process)"
                                          if args.device == "cpu" else ""),
        "",
        *table(rows, args.device == "cpu"),
    ]
    if args.device == "cpu":
        lines += ["", "all timed rounds (s): " + "; ".join(
            f"N={r['n']} {r['variant']}: " + " ".join(f"{t:.2f}" for t in r["times"]) for r in rows)]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    dtype = "" if args.dtype == "float32" else f"_{args.dtype}"
    out = args.out or REPO / "benchmarks" / "results" / f"loss_bench_{args.device}{dtype}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
