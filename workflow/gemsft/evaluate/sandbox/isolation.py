"""How isolated a worker's programs are, and whether strict mode may run them.

The caller's side: it reads the capabilities a worker reported (bootstrap.py, zygote.py) and
names the isolation level (docs/sandbox.md, "Isolation levels"). ``strict`` runs programs only
at the two full levels; ``best_effort`` runs them at any level and records which.
"""

from __future__ import annotations

MODES = ("strict", "best_effort")
ROOT, USER_NAMESPACES, PARTIAL, NONE = "root-namespaces", "user-namespaces", "partial", "none"
FULL = (ROOT, USER_NAMESPACES)

_USERNS_FIX = ("sysctl kernel.unprivileged_userns_clone=1 (or user.max_user_namespaces>0; on "
               "Ubuntu also kernel.apparmor_restrict_unprivileged_userns=0), or run as root or in "
               "a container that allows user namespaces")
_USERNS_REASONS = {
    "EPERM": "unprivileged user namespaces are disabled",
    "EACCES": "unprivileged user namespaces are disabled",
    "ENOSPC": "no user namespace may be created (user.max_user_namespaces is 0 or used up)",
    "EUSERS": "user namespaces are nested too deep",
    "EINVAL": "this kernel has no user namespaces",
    "ENOSYS": "this kernel has no user namespaces",
}


def aspects(caps: dict) -> dict[str, bool]:
    """Whether programs are cut off from the network, the host's files and the host's processes."""
    dropped_uid = caps["root"] and caps.get("uid") is not None
    return {
        "network": caps["net_ns"],
        "file-system": caps["mount_ns"] and (dropped_uid or caps.get("fs_read_only", False)),
        "process": caps["pid_ns"] and (dropped_uid or caps.get("seccomp", False)),
    }


def level(caps: dict) -> str:
    have = aspects(caps)
    if all(have.values()):
        return ROOT if caps["root"] else USER_NAMESPACES
    # A dropped uid alone still keeps programs off the caller's files and processes.
    dropped_uid = caps["root"] and caps.get("uid") is not None
    return PARTIAL if any(have.values()) or dropped_uid else NONE


def refusal(caps: dict) -> str | None:
    """Why strict mode must not run programs with these capabilities (one line), or None."""
    if level(caps) in FULL:
        return None
    missing = [name for name, ok in aspects(caps).items() if not ok]
    notes = "; ".join(caps.get("notes") or []) or "no namespace was created"
    if caps["root"]:
        if caps.get("uid") is None:
            why = "running as root, but no unprivileged uid could be set for programs"
            fix = "run as root of the host's user namespace, or map uid 65534 into this one"
        else:
            why = notes
            fix = ("give the process CAP_SYS_ADMIN (e.g. docker run --cap-add SYS_ADMIN "
                   "--security-opt seccomp=unconfined), or run it as an ordinary user where "
                   "user namespaces are allowed")
    elif caps.get("user_ns_error"):
        why = f"{_USERNS_REASONS.get(caps['user_ns_error'], 'no user namespace')} ({notes})"
        fix = _USERNS_FIX
    else:
        why = notes
        fix = ("allow mounts in unprivileged user namespaces (e.g. sysctl "
               "kernel.apparmor_restrict_unprivileged_userns=0), or run as root")
    lacking = " or ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
    return (f"evaluation.sandbox is strict and programs would run without {lacking} "
            f"isolation here: {why}; to get it: {fix}; or set evaluation.sandbox: best_effort to "
            f"run them with what there is (at worst rlimits only)").replace("\n", " ")
