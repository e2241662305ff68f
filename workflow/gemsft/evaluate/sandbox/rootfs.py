"""The file system of the user-namespace sandbox: a new root holding only what programs need.

Built by the bootstrap in its own mount namespace (docs/sandbox.md, "Without root"): a tmpfs
root with read-only bind mounts of the interpreter, its standard library, sys.path, the sandbox
directory and the system's shared libraries; the device nodes null, zero, full, random and
urandom; fresh tmpfs on /tmp, /dev/shm and the directory of the per-program working directories
(the only writable places); an empty /proc. Then pivot_root into it and detach the old root, so
no other path of the host exists inside. Standard library only; kernel calls come from kernel.py.
"""

from __future__ import annotations

import os
import re

from .kernel import (MNT_DETACH, MS_BIND, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC,
                     MS_NOSUID, MS_RDONLY, MS_REC, MS_RELATIME, MS_REMOUNT)

# The dynamic loader's directories and cache: the interpreter and its extension modules link
# against libraries there (libc, libssl, libsqlite3, libffi, ...). Those that exist are exposed.
SYSTEM_PATHS = ("/lib", "/lib64", "/lib32", "/libx32", "/usr/lib", "/usr/lib64", "/usr/lib32",
                "/usr/libx32", "/usr/local/lib", "/etc/ld.so.cache")
DEVICES = ("null", "zero", "full", "random", "urandom")
_SCRATCH = MS_NOSUID | MS_NODEV | MS_NOEXEC
_MAX_LINK_DEPTH = 40


def untraversable(paths: list[str], outermost_only: bool = False) -> dict[str, set[str]]:
    """Directory that others cannot traverse -> the names in it that ``paths`` go through. With
    ``outermost_only``, only the first such directory on each path (what can be exposed next)."""
    found: dict[str, set[str]] = {}
    for path in paths:
        cur = "/"
        for name in [p for p in path.split("/") if p]:
            if not os.stat(cur).st_mode & 0o001:
                found.setdefault(cur, set()).add(name)
                if outermost_only:
                    break
            cur = os.path.join(cur, name)
    return found
# statvfs flag -> mount flag. A bind mount inherited from a more privileged namespace is
# "locked": remounting it must repeat these flags or the kernel refuses.
_LOCKED_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                 (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
                 (os.ST_RELATIME, MS_RELATIME))


def plan(paths: list[str]) -> tuple[dict[str, str], list[str]]:
    """(symlinks to recreate: path -> target, real paths to bind) that make ``paths`` resolve.

    A symbolic link on the way to a path (``/lib -> usr/lib``, a venv's ``bin/python``) is
    recreated as it is, and its target exposed in turn; a path inside another exposed one is
    already there.
    """
    links: dict[str, str] = {}
    real: set[str] = set()
    for path in paths:
        _resolve(os.path.abspath(path), links, real, 0)
    real.discard("/")  # "/" on sys.path would expose the whole file system: leave it out
    binds = sorted(p for p in real if not any(q != p and _is_under(p, q) for q in real))
    links = {p: t for p, t in links.items() if not any(_is_under(p, b) for b in binds)}
    return links, binds


def _resolve(path: str, links: dict[str, str], real: set[str], depth: int) -> None:
    if depth > _MAX_LINK_DEPTH:
        return
    parts = [p for p in path.split("/") if p]
    cur = "/"
    for i, name in enumerate(parts):
        nxt = os.path.join(cur, name)
        if os.path.islink(nxt):
            target = os.readlink(nxt)
            links[nxt] = target
            # cur has no symbolic link in it, so ".." in the target can be resolved lexically.
            _resolve(os.path.normpath(os.path.join(cur, target, *parts[i + 1:])), links, real,
                     depth + 1)
            return
        cur = nxt
    if os.path.exists(cur):
        real.add(cur)


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def build(kernel, links: dict[str, str], binds: list[str], job_root: str) -> None:
    """Assemble the new root on /tmp's mount point and pivot into it."""
    # Every source is held open first: the new root covers the host's /tmp, where a checkout,
    # a virtual environment or the caller's job directory may live.
    held = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in binds}
    devices = {d: os.open(f"/dev/{d}", os.O_PATH | os.O_CLOEXEC)
               for d in DEVICES if os.path.exists(f"/dev/{d}")}
    root = "/tmp"
    umask = os.umask(0o022)
    try:
        kernel.mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV,
                     "mode=0755,size=1m,nr_inodes=4096")
        try:
            _populate(kernel, root, links, held, devices, job_root)
            kernel.mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            os.chdir(root)
            kernel.pivot_root(".", ".")  # the old root now lies on top of the new one ...
        except BaseException:
            os.chdir("/")
            kernel.umount(root, MNT_DETACH)  # back to the host's view; the caller notes why
            raise
    finally:
        for fd in [*held.values(), *devices.values()]:
            os.close(fd)
        os.umask(umask)
    kernel.umount(".", MNT_DETACH)  # ... and is detached from it: nothing of it is reachable
    os.chdir("/")


def _populate(kernel, root, links, held, devices, job_root) -> None:
    def inside(path: str) -> str:
        return root + path

    _mkdir(inside("/tmp"))
    kernel.mount("tmpfs", inside("/tmp"), "tmpfs", _SCRATCH, "mode=1777,size=64m,nr_inodes=16384")
    _mkdir(inside("/dev"))
    kernel.mount("tmpfs", inside("/dev"), "tmpfs", MS_NOSUID | MS_NOEXEC,
                 "mode=0755,size=64k,nr_inodes=64")
    for name, fd in devices.items():
        _touch(inside(f"/dev/{name}"))
        kernel.mount(f"/proc/self/fd/{fd}", inside(f"/dev/{name}"), None, MS_BIND)
    _mkdir(inside("/dev/shm"))
    kernel.mount("tmpfs", inside("/dev/shm"), "tmpfs", _SCRATCH,
                 "mode=1777,size=64m,nr_inodes=4096")
    _mkdir(inside("/proc"))  # no procfs: /proc/<pid>/mem, environ and fd do not exist inside
    for path, target in sorted(links.items()):
        _mkdir(os.path.dirname(inside(path)))
        os.symlink(target, inside(path))
    for path, fd in sorted(held.items()):
        target = inside(path)
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            _mkdir(target)
        else:
            _mkdir(os.path.dirname(target))
            _touch(target)
        kernel.mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        for mount_point in _mounts_at_or_under(target):
            kernel.mount(None, mount_point, None,
                         MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
                         | _locked_flags(mount_point))
    _mkdir(inside(job_root))
    kernel.mount("tmpfs", inside(job_root), "tmpfs", _SCRATCH,
                 "mode=0711,size=256m,nr_inodes=65536")
    kernel.mount(None, inside("/dev"), None,
                 MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)


def _mkdir(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _touch(path: str) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _locked_flags(mount_point: str) -> int:
    flags = os.statvfs(mount_point).f_flag
    return sum(ms for st, ms in _LOCKED_FLAGS if flags & st)


def _mounts_at_or_under(path: str) -> list[str]:
    """Mount points at or below ``path`` (a recursive bind brings the source's submounts)."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            # Field 5 is the mount point, with space, tab, newline and backslash as octal escapes.
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if _is_under(point, path) and point not in found:
                found.append(point)
    return found
