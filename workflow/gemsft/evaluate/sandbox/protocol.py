"""How the caller starts a sandbox worker and how the two talk.

A worker is worker.py run as a standalone script, first as the bootstrap, which execs the
zygote. Messages go both ways over the worker's stdin and stdout: JSON, each preceded by its
length (4 bytes, big-endian).
"""

from __future__ import annotations

import json
import os
import struct
import sys

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
SANDBOX_DIR = os.path.dirname(WORKER_SCRIPT)


def bootstrap_argv(cfg: dict) -> list[str]:
    # -I: no environment variables, user site-packages or script directory; -S: not even
    # site-packages, since the bootstrap runs as root and loads ctypes; -B: writes nothing.
    return [sys.executable, "-I", "-S", "-B", WORKER_SCRIPT, "--bootstrap", json.dumps(cfg)]


def zygote_argv(cfg: dict) -> list[str]:
    # site-packages (but still nothing of the environment) so that programs can import them.
    return [sys.executable, "-I", "-B", WORKER_SCRIPT, "--zygote", json.dumps(cfg)]


def frame(obj: object) -> bytes:
    data = json.dumps(obj).encode()
    return struct.pack(">I", len(data)) + data


def split_frames(buf: bytearray) -> list[dict]:
    """The complete messages at the start of ``buf``, removed from it."""
    messages = []
    while len(buf) >= 4:
        (size,) = struct.unpack(">I", buf[:4])
        if len(buf) < 4 + size:
            break
        messages.append(json.loads(bytes(buf[4:4 + size])))
        del buf[:4 + size]
    return messages


def write_frame(fd: int, obj: object) -> None:
    data = memoryview(frame(obj))
    while data:
        data = data[os.write(fd, data):]


def read_frame(fd: int) -> dict | None:
    """The next message from a blocking ``fd``; None at end of file."""

    def read_exact(n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    head = read_exact(4)
    if head is None:
        return None
    body = read_exact(struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)
