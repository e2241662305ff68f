"""Stage 1 of a worker, the bootstrap: namespaces and mounts, then exec of the zygote.

The only stage that loads ctypes (for prctl, unshare and mount); it runs as root where the
caller does. See docs/sandbox.md, "Process model".
"""

from __future__ import annotations

import os
import signal
import sys

from .protocol import zygote_argv

_CLONE_NEWNS = 0x00020000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER, _PR_SET_NO_NEW_PRIVS = 1, 36, 38


def bootstrap(cfg: dict) -> None:
    """Set up this worker's namespaces and mounts as far as allowed, then exec the zygote."""
    import ctypes  # here, not at the top: importing this module must not load ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def check(ret: int, what: str) -> None:
        if ret != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def mount(src, target, fstype, flags, data=None) -> None:
        enc = (lambda s: None if s is None else os.fsencode(s))
        check(libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
              f"mount {target}")

    check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
    if os.getppid() != cfg["parent_pid"]:
        os._exit(1)  # the caller is already gone
    check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    caps = {"root": os.geteuid() == 0, "mount_ns": False, "net_ns": False, "pid_ns": False,
            "proc_hidden": False, "notes": []}
    wanted = set(cfg["namespaces"]) if caps["root"] else set()
    if "mount" in wanted:
        try:
            check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
            mount(None, "/", None, _MS_REC | _MS_PRIVATE)
            scratch = ["/tmp", *(["/dev/shm"] if os.path.isdir("/dev/shm") else [])]
            # Interpreter paths under /tmp (a checkout or venv there) would vanish under the fresh
            # tmpfs: hold them open now and bind them back into it afterwards.
            held = {p: os.open(p, os.O_PATH) for p in cfg["paths"] if _is_under(p, scratch)}
            _expose([p for p in cfg["paths"] if p not in held] + [cfg["job_root"]], mount)
            opts = _MS_NOSUID | _MS_NODEV
            mount("tmpfs", "/tmp", "tmpfs", opts, "mode=1777,size=64m,nr_inodes=16384")
            if "/dev/shm" in scratch:
                mount("tmpfs", "/dev/shm", "tmpfs", opts, "mode=1777,size=64m,nr_inodes=4096")
            for path, fd in held.items():
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.makedirs(path, mode=0o755, exist_ok=True)
                else:
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
                mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
                os.close(fd)
            os.makedirs(cfg["job_root"], exist_ok=True)
            mount("tmpfs", cfg["job_root"], "tmpfs", opts, "mode=0711,size=256m,nr_inodes=65536")
            caps["mount_ns"] = True
        except OSError as e:
            caps["notes"].append(f"mount namespace: {e}")
    if "net" in wanted:
        try:
            check(libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            caps["net_ns"] = True
        except OSError as e:
            caps["notes"].append(f"network namespace: {e}")
    if "pid" in wanted:
        try:
            check(libc.unshare(_CLONE_NEWPID), "unshare(CLONE_NEWPID)")
            caps["pid_ns"] = True
        except OSError as e:
            caps["notes"].append(f"pid namespace: {e}")
    cfg = dict(cfg, caps=caps, slot=os.getpid())
    if caps["pid_ns"]:
        pid = os.fork()
        if pid == 0:  # PID 1 of the new namespace
            try:
                check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PDEATHSIG")
                if caps["mount_ns"]:
                    # No procfs at all in the sandbox: /proc/self/mem cannot be opened.
                    try:
                        mount("tmpfs", "/proc", "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                              "mode=0555,size=4k,nr_inodes=1")
                        cfg["caps"]["proc_hidden"] = True
                    except OSError as e:
                        cfg["caps"]["notes"].append(f"hiding /proc: {e}")
                check(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "SUBREAPER")
                os.execv(sys.executable, zygote_argv(cfg))
            finally:
                os._exit(127)
        # Stay as the waiter the caller holds; closing our copies of the pipes lets the
        # caller see EOF as soon as the zygote is gone.
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    check(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "PR_SET_CHILD_SUBREAPER")
    os.execv(sys.executable, zygote_argv(cfg))


def _is_under(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _expose(paths: list[str], mount) -> None:
    """Make ``paths`` reachable for other users inside this mount namespace.

    A directory on the way that others cannot traverse is covered by a tmpfs (mode 0755)
    into which only the needed children are bind-mounted back.
    """
    for _ in range(16):
        blocked: dict[str, set[str]] = {}
        for path in paths:
            cur = "/"
            for name in [p for p in path.split("/") if p]:
                if not os.stat(cur).st_mode & 0o001:
                    blocked.setdefault(cur, set()).add(name)
                    break
                cur = os.path.join(cur, name)
        if not blocked:
            return
        for directory, names in blocked.items():
            kept = []
            for name in sorted(names):
                child = os.path.join(directory, name)
                if os.path.lexists(child):
                    kept.append((name, os.open(child, os.O_PATH | os.O_NOFOLLOW),
                                 os.path.isdir(child) and not os.path.islink(child)))
            mount("tmpfs", directory, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=1m")
            for name, fd, is_dir in kept:
                target = os.path.join(directory, name)
                if is_dir:
                    os.mkdir(target, 0o755)
                else:
                    os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
                mount(f"/proc/self/fd/{fd}", target, None, _MS_BIND | _MS_REC)
                os.close(fd)
    raise OSError("could not expose the interpreter's paths")

