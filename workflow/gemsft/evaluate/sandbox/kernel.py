"""The kernel calls of the bootstrap (stage 1), through ctypes: prctl, unshare, mount, pivot_root.

Imported only by the bootstrap and the modules it calls, the one stage that loads ctypes (the
zygote never does). Every failed call raises OSError naming the call. Standard library only.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2

PR_SET_PDEATHSIG, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 22, 36, 38

# Numbers of the system calls glibc has no wrapper for, or that the seccomp filter names, and the
# AUDIT_ARCH value the filter checks, per machine (uname -m).
SYSCALLS = {
    "x86_64": {"pivot_root": 155, "ptrace": 101, "process_vm_readv": 310,
               "process_vm_writev": 311, "perf_event_open": 298, "pidfd_getfd": 438},
    "aarch64": {"pivot_root": 41, "ptrace": 117, "process_vm_readv": 270,
                "process_vm_writev": 271, "perf_event_open": 241, "pidfd_getfd": 438},
}
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Kernel:
    """libc, with each call checked."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.machine = os.uname().machine

    def check(self, ret: int, what: str) -> None:
        if ret != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def prctl(self, option: int, arg: int, what: str) -> None:
        self.check(self.libc.prctl(option, arg, 0, 0, 0), what)

    def unshare(self, flags: int, what: str) -> None:
        self.check(self.libc.unshare(flags), what)

    def mount(self, src, target, fstype, flags, data=None) -> None:
        enc = (lambda s: None if s is None else os.fsencode(s))
        self.check(self.libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags),
                                   enc(data)), f"mount {target}")

    def umount(self, target: str, flags: int) -> None:
        self.check(self.libc.umount2(os.fsencode(target), flags), f"umount {target}")

    def syscall_number(self, name: str) -> int:
        try:
            return SYSCALLS[self.machine][name]
        except KeyError:
            raise OSError(38, f"no {name} system call number for {self.machine}") from None

    def pivot_root(self, new_root: str, put_old: str) -> None:
        nr = self.syscall_number("pivot_root")
        self.check(self.libc.syscall(ctypes.c_long(nr), os.fsencode(new_root),
                                     os.fsencode(put_old)), "pivot_root")

    def load_seccomp(self, program: bytes) -> None:
        """Install a classic-BPF seccomp filter (needs no_new_privs); it cannot be removed."""
        buf = ctypes.create_string_buffer(program, len(program))
        fprog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
        self.check(self.libc.prctl(PR_SET_SECCOMP, 2, ctypes.byref(fprog), 0, 0),
                   "prctl(PR_SET_SECCOMP)")
