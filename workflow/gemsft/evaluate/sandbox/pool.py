"""The caller's side of the sandbox: a pool of workers that runs programs and collects results.

Each worker is a separate interpreter (protocol.py starts it) that runs one program at a time;
this side only sends sources and reads results, and replaces a worker that dies or hangs.
"""

from __future__ import annotations

import dataclasses
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time

from . import isolation
from .protocol import SANDBOX_DIR, bootstrap_argv, split_frames, write_frame

STATUSES = ("passed", "failed", "timeout", "error")

# Which namespaces the bootstrap tries, whether a dedicated uid is tried before ``nobody`` (as
# root) and whether a user namespace is tried (otherwise); tests switch these off to exercise
# the fallbacks and strict mode's refusal.
_NAMESPACES = ("mount", "net", "pid")
_DEDICATED_UID = True
_USER_NAMESPACE = True
# Grace on top of the per-program timeout before the caller declares a worker hung.
_WORKER_GRACE_S = 30.0
_STARTUP_TIMEOUT_S = 120.0


@dataclasses.dataclass(frozen=True)
class ExecutionResult:
    """Outcome of one program. ``passed`` is true iff ``status == "passed"``."""

    passed: bool
    status: str
    detail: str
    seconds: float
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None  # exit code, or -signal number; None if never reaped
    isolation: str = ""  # the worker's isolation level (isolation.py), "" if none was reported

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.passed != (self.status == "passed"):
            raise ValueError("passed must equal status == 'passed'")


class SandboxUnavailable(RuntimeError):
    """Strict mode refused to run programs: this machine cannot isolate them (the message says
    what is missing and how to get it)."""


class _Worker:
    """Caller-side handle of one sandbox worker (bootstrap process + zygote)."""

    def __init__(self, cfg: dict) -> None:
        self.proc = subprocess.Popen(
            bootstrap_argv(cfg), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_worker_env(),
            cwd="/", start_new_session=True, close_fds=True, bufsize=0)
        self.out_fd = self.proc.stdout.fileno()
        os.set_blocking(self.out_fd, False)
        self.buf = bytearray()
        self.caps: dict | None = None
        self.job: int | None = None
        self.deadline = time.monotonic() + _STARTUP_TIMEOUT_S

    def send(self, job: int, source: str, timeout_s: float) -> None:
        self.job = job
        self.deadline = time.monotonic() + timeout_s + _WORKER_GRACE_S
        write_frame(self.proc.stdin.fileno(), {"source": source, "timeout": timeout_s})

    def read_messages(self) -> list[dict] | None:
        """Messages now complete, or None at end of file."""
        try:
            data = os.read(self.out_fd, 1 << 20)
        except BlockingIOError:
            return []
        if not data:
            return None
        self.buf += data
        return split_frames(self.buf)

    def close(self, kill: bool = False) -> None:
        if not kill:
            try:
                self.proc.stdin.close()  # EOF: the zygote cleans up and exits
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                kill = True
        if kill and self.proc.poll() is None:
            # The zygote has PR_SET_PDEATHSIG=SIGKILL towards the bootstrap, and as PID 1
            # of its namespace its death takes every program process with it.
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


def _worker_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8"}


def _python_paths() -> list[str]:
    """Paths the sandbox interpreter must be able to read (used to expose them).

    The whole sandbox directory, not only worker.py: the worker imports its siblings from it.
    """
    paths = {os.path.realpath(sys.executable), os.path.realpath(SANDBOX_DIR)}
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path):
        if p and os.path.isabs(p) and os.path.exists(p):
            paths.add(os.path.realpath(p))
    return sorted(paths)


class _Pool:
    def __init__(self, n: int, sandbox: str) -> None:
        self.sandbox = sandbox
        self.base = tempfile.mkdtemp(prefix="gemsft-exec-")
        os.chmod(self.base, 0o711)
        self.cfg = {"job_root": self.base, "paths": _python_paths(), "parent_pid": os.getpid(),
                    "namespaces": list(_NAMESPACES), "dedicated_uid": _DEDICATED_UID,
                    "user_namespace": _USER_NAMESPACE}
        self.workers: list[_Worker] = []
        self.sel = selectors.DefaultSelector()
        try:
            for _ in range(n):
                self._spawn()
            self._await_ready(self.workers)
        except BaseException:
            self.close(kill=True)
            raise

    def _spawn(self) -> _Worker:
        w = _Worker(self.cfg)
        self.workers.append(w)
        self.sel.register(w.out_fd, selectors.EVENT_READ, w)
        return w

    def _await_ready(self, workers: list[_Worker]) -> None:
        pending = set(workers)
        with selectors.DefaultSelector() as sel:  # only these: others may be busy
            for w in workers:
                sel.register(w.out_fd, selectors.EVENT_READ, w)
            while pending:
                for key, _ in sel.select(timeout=1.0):
                    w = key.data
                    msgs = w.read_messages()
                    if msgs is None:
                        raise RuntimeError("sandbox worker failed to start (see stderr)")
                    if any(m.get("ready") for m in msgs):
                        caps = next(m["caps"] for m in msgs if m.get("ready"))
                        caps["isolation"] = isolation.level(caps)
                        # Checked for every worker, replacements too: one may come up with
                        # less (e.g. once user.max_user_namespaces is used up).
                        refused = isolation.refusal(caps)
                        if refused and self.sandbox == "strict":
                            raise SandboxUnavailable(refused)
                        w.caps = caps
                        pending.discard(w)
                        sel.unregister(w.out_fd)
                for w in pending:
                    if time.monotonic() > w.deadline:
                        raise RuntimeError("sandbox worker did not start in time")

    def _replace(self, w: _Worker) -> _Worker:
        self.sel.unregister(w.out_fd)
        self.workers.remove(w)
        w.close(kill=True)
        nw = self._spawn()
        self._await_ready([nw])
        return nw

    def run(self, programs: list[str], timeout_s: float, progress=None) -> list[ExecutionResult]:
        results: list[ExecutionResult | None] = [None] * len(programs)
        done = progress or (lambda n: None)  # called with 1 as each program finishes
        todo = iter(range(len(programs)))
        busy = 0

        def lost(w: _Worker, status: str, detail: str, seconds: float) -> None:
            """The worker failed while running w.job: record that and replace it."""
            nonlocal busy
            if w.job is not None:
                results[w.job] = ExecutionResult(False, status, detail, seconds,
                                                 isolation=w.caps["isolation"])
                busy -= 1
                done(1)
            dispatch(self._replace(w))

        def dispatch(w: _Worker) -> None:
            nonlocal busy
            i = next(todo, None)
            if i is None:
                return
            try:
                w.send(i, programs[i], timeout_s)
            except OSError:
                busy += 1
                lost(w, "error", "sandbox worker died", 0.0)
                return
            busy += 1

        for w in list(self.workers):
            dispatch(w)
        while busy:
            for key, _ in self.sel.select(timeout=1.0):
                w = key.data
                if w not in self.workers:
                    continue  # replaced during this round
                msgs = w.read_messages()
                if msgs is None:
                    lost(w, "error", "sandbox worker died", 0.0)
                    continue
                for m in msgs:
                    results[w.job] = ExecutionResult(
                        passed=m["status"] == "passed", status=m["status"], detail=m["detail"],
                        seconds=m["seconds"], stdout=m["stdout"], stderr=m["stderr"],
                        returncode=m["returncode"], isolation=w.caps["isolation"])
                    w.job = None
                    busy -= 1
                    done(1)
                    dispatch(w)
            now = time.monotonic()
            for w in list(self.workers):
                if w.job is not None and now > w.deadline:
                    lost(w, "error", "sandbox worker hung", timeout_s + _WORKER_GRACE_S)
        return results  # type: ignore[return-value]

    def close(self, kill: bool = False) -> None:
        for w in self.workers:
            try:
                self.sel.unregister(w.out_fd)
            except (KeyError, ValueError):
                pass
            w.close(kill=kill)
        self.workers.clear()
        self.sel.close()
        shutil.rmtree(self.base, ignore_errors=True)


def run_programs(programs: list[str], timeout_s: float = 3.0, workers: int | None = None,
                 sandbox: str = "strict", progress=None) -> list[ExecutionResult]:
    """Run each program in the sandbox; results are in input order.

    ``timeout_s`` is the wall-clock limit per program; ``workers`` the number of programs
    run at once (default: ``os.cpu_count()``). ``sandbox`` (evaluation.sandbox): ``strict``
    raises SandboxUnavailable, before any program runs, where neither root nor a user
    namespace isolates programs from the network, the host's files and its processes;
    ``best_effort`` runs them with what isolation there is (each result's ``isolation``).
    ``progress``, if given, is called with 1 as each program finishes (e.g. a tqdm bar's update).
    """
    programs = list(programs)
    if sandbox not in isolation.MODES:
        raise ValueError(f"sandbox (evaluation.sandbox) must be one of "
                         f"{', '.join(isolation.MODES)}, not {sandbox!r}")
    if not all(isinstance(p, str) for p in programs):
        raise TypeError("programs must be strings")
    if not timeout_s > 0:
        raise ValueError("timeout_s must be positive")
    if not programs:
        return []
    n = workers if workers is not None else (os.cpu_count() or 1)
    if n < 1:
        raise ValueError("workers must be >= 1")
    pool = _Pool(min(n, len(programs)), sandbox)
    ok = False
    try:
        results = pool.run(programs, float(timeout_s), progress)
        ok = True
        return results
    finally:
        pool.close(kill=not ok)


_CAPS: dict | None = None


def sandbox_capabilities() -> dict:
    """What isolation the sandbox achieves on this machine (starts one worker once).

    ``isolation`` names the level (isolation.py); ``refusal`` is strict mode's one-line reason
    not to run programs here, or None.
    """
    global _CAPS
    if _CAPS is None:
        pool = _Pool(1, "best_effort")
        try:
            _CAPS = dict(pool.workers[0].caps, refusal=isolation.refusal(pool.workers[0].caps))
        finally:
            pool.close()
    return dict(_CAPS)
