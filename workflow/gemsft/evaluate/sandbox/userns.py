"""Entering an unprivileged user namespace, with new mount, network, PID and IPC namespaces.

The bootstrap's isolation where it is not root (docs/sandbox.md, "Without root"). The caller's
uid and gid are mapped to themselves, so files keep their owners and the zygote, exec'd as that
uid, holds no capability in the namespace. Standard library only; the kernel calls come from
kernel.py.
"""

from __future__ import annotations

import os

from .kernel import CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER

FLAGS = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC
MAX_USER_NAMESPACES = "/proc/sys/user/max_user_namespaces"


def enter(kernel) -> None:
    """Unshare all five namespaces at once and map this process's uid and gid to themselves.

    The PID namespace applies to the children forked from now on. Until it execs, this process
    has every capability inside the new namespaces (needed for the mounts of rootfs.py).
    """
    uid, gid = os.geteuid(), os.getegid()
    kernel.unshare(FLAGS, "unshare(CLONE_NEWUSER|NEWNS|NEWNET|NEWPID|NEWIPC)")
    # An unprivileged process may map only its own ids, and its gid only once setgroups is denied.
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")


def forbid_nested() -> None:
    """No user namespace may be created inside this one, so no program ever holds a capability
    anywhere (a nested namespace would give it every capability over namespaces it makes)."""
    _write(MAX_USER_NAMESPACES, "0")


def _write(path: str, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise OSError(e.errno, f"writing {path}: {e.strerror}") from None
