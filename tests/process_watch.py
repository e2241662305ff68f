"""The host's view of the processes a sandbox test starts: who is whose child, from /proc, and the
peak of a count while a run goes on (tests/test_execution.py, tests/test_sandbox_hostile.py)."""

from __future__ import annotations

import collections
import os
import threading
import time


def children_by_parent() -> dict[int, list[int]]:
    """{parent pid: [child pids]} of every live process, from the host's /proc."""
    children = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    line = f.read()
            except OSError:
                continue  # gone since the listing
            # The command name may hold spaces and parentheses: the fields start after the last ")".
            children[int(line[line.rindex(b")") + 2:].split()[1])].append(int(name))
    return children


def children_of(ppid: int) -> list[int]:
    return children_by_parent().get(ppid, [])


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    children = children_by_parent()
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class PeakWatcher:
    """Samples a value in a thread while a run is going on and keeps the maximum."""

    def __init__(self, sample):
        self.sample, self.peak = sample, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop)

    def _loop(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.sample())
            time.sleep(0.03)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
