"""What a program's run amounts to: its captured output and its status.

The statuses and what leads to each are in docs/sandbox.md, "Statuses".
"""

from __future__ import annotations

import os
import signal

_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT,
                  signal.SIGSYS, signal.SIGXFSZ}


class Capture:
    """Keeps the head (and optionally the tail) of a byte stream."""

    def __init__(self, head: int, tail: int = 0) -> None:
        self.head_cap, self.tail_cap = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    @property
    def full(self) -> bool:
        return len(self.head) >= self.head_cap and not self.tail_cap

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_cap:
            self.tail += data[-self.tail_cap:]
            if len(self.tail) > self.tail_cap:
                del self.tail[:len(self.tail) - self.tail_cap]

    def text(self) -> str:
        kept = len(self.head) + len(self.tail)
        out = bytes(self.head)
        if self.total > kept:
            out += f"\n...[{self.total - kept} bytes dropped]...\n".encode()
        out += bytes(self.tail)
        return out.decode("utf-8", "replace")


def judge(status, timed_out, token, report, report_len, timeout_s) -> tuple[str, str]:
    """(status, detail) of a run from its wait status and what its result pipe carried.

    The pipe carries the run's token if the program completed, else a report child.py wrote:
    F (test failure or early exit), E (error) or S (the child's setup failed), then a detail.
    """
    if timed_out:
        return "timeout", f"timed out after {timeout_s:g} s"
    code = os.waitstatus_to_exitcode(status)
    if report == token and report_len == len(token):
        if code == 0:
            return "passed", ""
        return "error", f"completed but exited with {code}"
    kind, text = report[:1], report[1:].decode("utf-8", "replace")
    if kind == b"F" and code == 1:
        return "failed", text
    if kind in (b"E", b"S") and code in (1, 70):
        return "error", text if kind == b"E" else f"sandbox setup failed: {text}"
    if report:
        return "error", "the result channel was tampered with"
    if code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        if sig == signal.SIGXCPU:
            return "timeout", "CPU time limit exceeded (SIGXCPU)"
        if sig in _CRASH_SIGNALS:
            return "error", f"crashed with {name}"
        return "failed", f"killed by {name} before the program completed"
    return "failed", f"exited with status {code} before the program completed"

