"""The seccomp filter of the user-namespace sandbox (docs/sandbox.md, "Without root").

In a user namespace that maps one uid, the zygote, the launcher and every program process share
that uid and stay dumpable, so the kernel's own rule (same uid, dumpable) would let a program's
subprocess ptrace the zygote or the launcher, read their memory or take their descriptors (the
zygote's pipe to the caller). The filter refuses exactly those calls with EPERM, for every
process the bootstrap starts; filters are inherited and cannot be removed. System calls of
another ABI (i386 via int 0x80, x32) could name the same calls by other numbers: the filter
kills the process instead. Standard library only.
"""

from __future__ import annotations

import errno
import struct

from .kernel import AUDIT_ARCH

DENIED = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "perf_event_open")

_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_RET_ALLOW, _RET_ERRNO, _RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_X32_SYSCALL_BIT = 0x40000000
_OFFSET_NR, _OFFSET_ARCH = 0, 4  # struct seccomp_data


def program(arch: int, numbers: list[int], x32_abi: bool) -> bytes:
    """The BPF program: foreign ABI -> kill, a denied number -> EPERM, anything else -> allow."""
    insns: list[tuple[int, int, int, int]] = []  # (code, jump if true, jump if false, k)
    kill, deny = "kill", "deny"

    insns.append((_LD_W_ABS, 0, 0, _OFFSET_ARCH))
    insns.append((_JEQ_K, 0, kill, arch))
    insns.append((_LD_W_ABS, 0, 0, _OFFSET_NR))
    if x32_abi:
        insns.append((_JGE_K, kill, 0, _X32_SYSCALL_BIT))
    for nr in numbers:
        insns.append((_JEQ_K, deny, 0, nr))
    insns.append((_RET_K, 0, 0, _RET_ALLOW))
    targets = {kill: len(insns), deny: len(insns) + 1}
    insns.append((_RET_K, 0, 0, _RET_KILL_PROCESS))
    insns.append((_RET_K, 0, 0, _RET_ERRNO | errno.EPERM))

    def offset(i: int, jump) -> int:  # jumps are relative to the next instruction
        return targets[jump] - i - 1 if isinstance(jump, str) else jump

    return b"".join(struct.pack("=HBBI", code, offset(i, jt), offset(i, jf), k)
                    for i, (code, jt, jf, k) in enumerate(insns))


def install(kernel) -> None:
    """Install the filter in this process (and so in everything it starts from now on)."""
    if kernel.machine not in AUDIT_ARCH:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {kernel.machine}")
    numbers = [kernel.syscall_number(name) for name in DENIED]
    kernel.load_seccomp(program(AUDIT_ARCH[kernel.machine], numbers,
                                x32_abi=kernel.machine == "x86_64"))
