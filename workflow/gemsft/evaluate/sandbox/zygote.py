"""Stage 2 of a worker, the zygote: forks one child per program and supervises it.

A fresh interpreter the bootstrap execs; it never imports ctypes. It preloads common modules,
then for each program makes a working directory, forks (child.py), enforces the wall-clock
limit, captures output, kills what the program left and reports the verdict. See
docs/sandbox.md, "Process model" and "Statuses".
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import time

from .child import become, run_child
from .limits import DETAIL_CAP_CHARS, FALLBACK_UID, STDERR_CAP_BYTES, STDOUT_CAP_BYTES, UID_BASE
from .outcome import Capture, judge
from .protocol import read_frame, write_frame

# Modules imported once in the zygote so that programs do not pay for them (and can use
# them even where the standard library would not be readable by the sandbox uid).
PRELOAD_MODULES = (
    "abc", "array", "bisect", "collections", "copy", "dataclasses", "datetime", "decimal",
    "enum", "fractions", "functools", "hashlib", "heapq", "itertools", "json", "linecache",
    "math", "numbers", "operator", "pathlib", "random", "re", "selectors", "statistics",
    "string", "struct", "subprocess", "tempfile", "textwrap", "time", "traceback", "types",
    "typing", "unicodedata",
)


class Zygote:
    """Chooses the uid programs run as, then runs the programs the caller sends until EOF."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.caps = dict(cfg["caps"])
        self.job_root = cfg["job_root"]
        self.devnull_r = os.open(os.devnull, os.O_RDONLY)
        self.devnull_w = os.open(os.devnull, os.O_WRONLY)
        self.n = 0
        self.uid: int | None = None
        self.dedicated = False
        if "ctypes" in sys.modules or "_ctypes" in sys.modules:
            raise RuntimeError("ctypes must not be loaded in the zygote")
        if self.caps["root"]:
            os.makedirs(self.job_root, mode=0o711, exist_ok=True)
            candidates = [UID_BASE + int(cfg["slot"])] if cfg["dedicated_uid"] else []
            for uid in candidates + [FALLBACK_UID]:
                code = self._probe_uid(uid)
                if code in (0, 3):
                    self.uid, self.dedicated = uid, uid != FALLBACK_UID
                    self.caps["stdlib_readable"] = code == 0
                    break
            if self.dedicated and not self.caps["pid_ns"]:
                self._kill_uid()  # stale processes of a previous worker with this slot
        self.caps.update(uid=self.uid, dedicated_uid=self.dedicated,
                         pidfd=hasattr(os, "pidfd_open"))

    # -- helpers ---------------------------------------------------------------------

    def _probe_uid(self, uid: int) -> int:
        pid = os.fork()
        if pid == 0:
            code = 2
            try:
                become(uid)
                code = 3
                os.listdir(os.path.dirname(os.__file__))
                code = 0
            except BaseException:
                pass
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    def _kill_uid(self) -> None:
        """SIGKILL every process of the dedicated uid (atomic w.r.t. fork in the kernel)."""
        pid = os.fork()
        if pid == 0:
            try:
                become(self.uid)
                for _ in range(2):
                    os.kill(-1, signal.SIGKILL)
            except BaseException:
                pass
            os._exit(0)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def _kill_children(self) -> None:
        me = os.getpid()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                if int(stat[stat.rindex(b")") + 2:].split()[1]) == me:
                    os.kill(int(name), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass

    @staticmethod
    def _children_alive() -> bool:
        """Reap what can be reaped; true while any child (hence descendant) is alive."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True

    def _cleanup(self, pgid: int) -> bool:
        if pgid > 0:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        for attempt in range(200):
            if not self._children_alive():
                return True
            if self.caps["pid_ns"]:
                try:  # as PID 1: every other process of the namespace, atomically
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            elif self.dedicated:
                self._kill_uid()
            else:
                self._kill_children()
            time.sleep(min(0.001 * attempt, 0.05))
        return False

    # -- main loop -------------------------------------------------------------------

    def serve(self) -> None:
        import gc

        # As PID 1 of its namespace the zygote gets no signal from inside that it does not
        # handle; Python's SIGINT handler would be one (programs of its own uid could send it).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for name in PRELOAD_MODULES:
            try:
                __import__(name)
            except ImportError:
                pass
        write_frame(1, {"ready": True, "caps": self.caps})
        gc.collect()
        gc.freeze()  # keep the collector off the pages every child shares
        while True:
            job = read_frame(0)
            if job is None:
                break
            try:
                reply = self.run_job(job["source"], float(job["timeout"]))
            except Exception as e:  # e.g. no space for the working directory
                self._cleanup(0)
                reply = {"status": "error", "detail": f"sandbox failure: {e!r}"[:DETAIL_CAP_CHARS],
                         "seconds": 0.0, "stdout": "", "stderr": "", "returncode": None}
            write_frame(1, reply)

    def run_job(self, source: str, timeout_s: float) -> dict:
        self.n += 1
        jobdir = os.path.join(self.job_root, f"p{self.n}-{os.urandom(6).hex()}")
        os.mkdir(jobdir, 0o700)
        if self.uid is not None:
            os.chown(jobdir, self.uid, self.uid)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        res_r, res_w = os.pipe()
        tok_r, tok_w = os.pipe()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            run_child(self, source, timeout_s, jobdir, out_w, err_w, res_w, tok_r)
        for fd in (out_w, err_w, res_w, tok_r):
            os.close(fd)
        token = os.urandom(16)  # created after the fork: not in the child's memory
        try:
            os.write(tok_w, token)
        except OSError:
            pass  # the child is already gone; the verdict will say how
        os.close(tok_w)
        try:
            return self._supervise(pid, token, start, timeout_s, out_r, err_r, res_r)
        finally:
            for fd in (out_r, err_r, res_r):
                os.close(fd)
            try:  # the common case, cheaply; anything else the program left: rmtree
                os.unlink(os.path.join(jobdir, "program.py"))
                os.rmdir(jobdir)
            except OSError:
                shutil.rmtree(jobdir, ignore_errors=True)

    def _supervise(self, pid, token, start, timeout_s, out_r, err_r, res_r) -> dict:
        caps = {out_r: Capture(STDOUT_CAP_BYTES),
                err_r: Capture(STDERR_CAP_BYTES // 2, STDERR_CAP_BYTES // 2),
                res_r: Capture(4096)}
        poller = select.poll()
        for fd in caps:
            os.set_blocking(fd, False)
            poller.register(fd, select.POLLIN)
        pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        open_fds = set(caps)
        deadline = start + timeout_s
        timed_out = exited = False
        status = None
        try:
            while not exited:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                wait_ms = remaining * 1000 if pidfd is not None else min(remaining * 1000, 5)
                for fd, _ in poller.poll(max(1, int(wait_ms) + 1)):
                    if fd == pidfd:
                        exited = True
                    elif not self._pump(fd, caps[fd]):
                        poller.unregister(fd)
                        open_fds.discard(fd)
                if pidfd is None:
                    wpid, status = os.waitpid(pid, os.WNOHANG)
                    exited = wpid != 0
            seconds = time.monotonic() - start
        finally:
            if pidfd is not None:
                os.close(pidfd)
        # Kill the group while the (zombie) leader still reserves its pid, then reap.
        for kill in (os.killpg, os.kill):  # os.kill: in case it died before setsid()
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if status is None:
            _, status = os.waitpid(pid, 0)
        clean = self._cleanup(pid)
        # Every writer is dead now: drain to end of file (bounded, in case of surprises).
        drain_deadline = time.monotonic() + 2.0
        while open_fds and time.monotonic() < drain_deadline:
            for fd, _ in poller.poll(100):
                if fd in open_fds and not self._pump(fd, caps[fd]):
                    open_fds.discard(fd)
                    poller.unregister(fd)
        verdict = judge(status, timed_out, token, bytes(caps[res_r].head), caps[res_r].total,
                        timeout_s)
        if not clean:
            verdict = ("error", "could not kill all of the program's processes")
        return {"status": verdict[0], "detail": verdict[1][:DETAIL_CAP_CHARS],
                "seconds": round(seconds, 6), "stdout": caps[out_r].text(),
                "stderr": caps[err_r].text(),
                "returncode": os.waitstatus_to_exitcode(status)}

    def _pump(self, fd: int, cap: Capture) -> bool:
        """Move available data from fd into cap; False at end of file."""
        if cap.full:
            try:
                n = os.splice(fd, self.devnull_w, 1 << 20)
                cap.total += n
                return n > 0
            except BlockingIOError:
                return True
            except OSError:
                pass
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return True
        cap.feed(data)
        return bool(data)
