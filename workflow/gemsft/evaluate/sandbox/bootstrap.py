"""Stage 1 of a worker, the bootstrap: namespaces and mounts, then exec of the zygote.

The only stage that loads ctypes (kernel.py: prctl, unshare, mount, pivot_root, seccomp). As root
it unshares mount, network and PID namespaces itself; otherwise it enters an unprivileged user
namespace with those and an IPC namespace, builds a minimal read-only root (rootfs.py) and
installs the seccomp filter (seccomp.py). See docs/sandbox.md, "Process model" and "Without root".
"""

from __future__ import annotations

import errno
import os
import signal
import sys

from . import rootfs, seccomp, userns
from .kernel import (CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, MS_BIND, MS_NODEV, MS_NOEXEC,
                     MS_NOSUID, MS_PRIVATE, MS_REC, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS,
                     PR_SET_PDEATHSIG, Kernel)
from .protocol import zygote_argv

# The namespaces the user-namespace path needs together: it has no partial form.
_USER_NAMESPACE_NEEDS = {"mount", "net", "pid"}


def bootstrap(cfg: dict) -> None:
    """Set up this worker's namespaces and mounts as far as allowed, then exec the zygote."""
    kernel = Kernel()
    mount = kernel.mount

    kernel.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    if os.getppid() != cfg["parent_pid"]:
        os._exit(1)  # the caller is already gone
    kernel.prctl(PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
    caps = {"root": os.geteuid() == 0, "user_ns": False, "mount_ns": False, "net_ns": False,
            "pid_ns": False, "ipc_ns": False, "proc_hidden": False, "fs_read_only": False,
            "seccomp": False, "nested_userns": None, "user_ns_error": None, "notes": []}
    wanted = set(cfg["namespaces"])
    if caps["root"]:
        _root_namespaces(kernel, cfg, wanted, caps)
    elif cfg["user_namespace"] and _USER_NAMESPACE_NEEDS <= wanted:
        _user_namespace(kernel, cfg, caps)
    else:
        caps["notes"].append("user namespace: switched off")
        caps["user_ns_error"] = "switched off"
    cfg = dict(cfg, caps=caps, slot=os.getpid())
    if caps["pid_ns"]:
        pid = os.fork()
        if pid == 0:  # PID 1 of the new namespace
            try:
                kernel.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PDEATHSIG")
                if caps["root"] and caps["mount_ns"]:
                    # No procfs at all in the sandbox: /proc/self/mem cannot be opened.
                    try:
                        mount("tmpfs", "/proc", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                              "mode=0555,size=4k,nr_inodes=1")
                        cfg["caps"]["proc_hidden"] = True
                    except OSError as e:
                        cfg["caps"]["notes"].append(f"hiding /proc: {e}")
                kernel.prctl(PR_SET_CHILD_SUBREAPER, 1, "SUBREAPER")
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
    kernel.prctl(PR_SET_CHILD_SUBREAPER, 1, "PR_SET_CHILD_SUBREAPER")
    os.execv(sys.executable, zygote_argv(cfg))


def _root_namespaces(kernel, cfg: dict, wanted: set[str], caps: dict) -> None:
    """As root: mount, network and PID namespaces; the zygote then drops to a sandbox uid."""
    mount = kernel.mount
    if "mount" in wanted:
        try:
            kernel.unshare(CLONE_NEWNS, "unshare(CLONE_NEWNS)")
            mount(None, "/", None, MS_REC | MS_PRIVATE)
            scratch = ["/tmp", *(["/dev/shm"] if os.path.isdir("/dev/shm") else [])]
            # Interpreter paths under /tmp (a checkout or venv there) would vanish under the fresh
            # tmpfs: hold them open now and bind them back into it afterwards.
            held = {p: os.open(p, os.O_PATH) for p in cfg["paths"] if _is_under(p, scratch)}
            _expose([p for p in cfg["paths"] if p not in held] + [cfg["job_root"]], mount)
            opts = MS_NOSUID | MS_NODEV
            mount("tmpfs", "/tmp", "tmpfs", opts, "mode=1777,size=64m,nr_inodes=16384")
            if "/dev/shm" in scratch:
                mount("tmpfs", "/dev/shm", "tmpfs", opts, "mode=1777,size=64m,nr_inodes=4096")
            for path, fd in held.items():
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.makedirs(path, mode=0o755, exist_ok=True)
                else:
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
                mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
                os.close(fd)
            os.makedirs(cfg["job_root"], exist_ok=True)
            mount("tmpfs", cfg["job_root"], "tmpfs", opts, "mode=0711,size=256m,nr_inodes=65536")
            caps["mount_ns"] = True
        except OSError as e:
            caps["notes"].append(f"mount namespace: {e}")
    if "net" in wanted:
        try:
            kernel.unshare(CLONE_NEWNET, "unshare(CLONE_NEWNET)")
            caps["net_ns"] = True
        except OSError as e:
            caps["notes"].append(f"network namespace: {e}")
    if "pid" in wanted:
        try:
            kernel.unshare(CLONE_NEWPID, "unshare(CLONE_NEWPID)")
            caps["pid_ns"] = True
        except OSError as e:
            caps["notes"].append(f"pid namespace: {e}")


def _user_namespace(kernel, cfg: dict, caps: dict) -> None:
    """Not root: a user namespace with all the others, the minimal root and the seccomp filter.

    Each step that fails is noted and leaves its capability false; the caller's isolation level
    (isolation.py) then says what is missing.
    """
    try:
        userns.enter(kernel)
    except OSError as e:
        caps["notes"].append(f"user namespace: {e}")
        caps["user_ns_error"] = errno.errorcode.get(e.errno, str(e.errno))
        return
    caps.update(user_ns=True, mount_ns=True, net_ns=True, pid_ns=True, ipc_ns=True)
    try:
        userns.forbid_nested()
        caps["nested_userns"] = False
    except OSError as e:
        caps["nested_userns"] = True
        caps["notes"].append(f"nested user namespaces: {e}")
    try:
        links, binds = rootfs.plan([*cfg["paths"], *rootfs.SYSTEM_PATHS, sys.executable])
        rootfs.build(kernel, links, binds, cfg["job_root"])
        caps["fs_read_only"] = caps["proc_hidden"] = True
    except OSError as e:
        caps["notes"].append(f"minimal root file system: {e}")
    try:
        seccomp.install(kernel)
        caps["seccomp"] = True
    except OSError as e:
        caps["notes"].append(f"seccomp filter: {e}")


def _is_under(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _expose(paths: list[str], mount) -> None:
    """Make ``paths`` reachable for other users inside this mount namespace.

    A directory on the way that others cannot traverse is covered by a tmpfs (mode 0755)
    into which only the needed children are bind-mounted back.
    """
    for _ in range(16):
        blocked = rootfs.untraversable(paths, outermost_only=True)
        if not blocked:
            return
        for directory, names in blocked.items():
            kept = []
            for name in sorted(names):
                child = os.path.join(directory, name)
                if os.path.lexists(child):
                    kept.append((name, os.open(child, os.O_PATH | os.O_NOFOLLOW),
                                 os.path.isdir(child) and not os.path.islink(child)))
            mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
            for name, fd, is_dir in kept:
                target = os.path.join(directory, name)
                if is_dir:
                    os.mkdir(target, 0o755)
                else:
                    os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
                mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
                os.close(fd)
    raise OSError("could not expose the interpreter's paths")

