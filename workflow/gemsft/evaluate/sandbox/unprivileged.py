"""Running a command as an ordinary user, to check the sandbox without root (tests, benchmark).

For a caller that is root (as CI is): ``command_line`` starts a command under ``setpriv`` as an
unprivileged uid (default nobody, 65534) with no supplementary groups and no capabilities, the
way a cluster user runs. The interpreter must be reachable for that uid; a pyenv install under
/root (mode 0700) is not. So the command runs in a private mount namespace of its own in which
each directory on the way to the needed paths that others cannot traverse is covered by a tmpfs
showing only the needed entries: the same paths, now reachable, and nothing else of those
directories. Nothing changes on the host. util-linux's unshare, mount and setpriv do the work.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys

from .rootfs import untraversable

UNPRIVILEGED_UID = 65534
_TOOLS = ("unshare", "mount", "setpriv")


def unavailable() -> str | None:
    """Why ``command_line`` cannot be used here, or None."""
    if os.geteuid() != 0:
        return f"not root (uid {os.geteuid()}): no other uid to switch to"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found (util-linux)"
    return None


def needed_paths(extra: list[str] = ()) -> list[str]:
    """The interpreter, its prefixes and sys.path (what a Python run needs), plus ``extra``."""
    paths = {os.path.realpath(sys.executable), *map(os.path.realpath, extra)}
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path):
        if p and os.path.isabs(p) and os.path.exists(p):
            paths.add(os.path.realpath(p))
    return sorted(paths)


def blocked(paths: list[str]) -> dict[str, list[str]]:
    """Directory others cannot traverse -> the entries in it that ``paths`` go through, outermost
    directory first."""
    found = untraversable(paths)
    return {d: sorted(found[d]) for d in sorted(found, key=lambda d: d.count("/"))}


def command_line(argv: list[str], uid: int = UNPRIVILEGED_UID,
                 extra_paths: list[str] = ()) -> list[str]:
    """``argv`` run as ``uid`` (its own gid, no groups) with the interpreter made reachable."""
    lines = ["set -e", 'stage=$(mktemp -d)']
    for i, (directory, names) in enumerate(blocked(needed_paths(list(extra_paths))).items()):
        moves = []
        for j, name in enumerate(names):
            source, held = os.path.join(directory, name), f'"$stage/{i}-{j}"'
            make = "mkdir" if os.path.isdir(source) else "touch"
            lines += [f"{make} {held}", f"mount --bind {shlex.quote(source)} {held}"]
            moves += [f"{make} {shlex.quote(source)}", f"mount --move {held} {shlex.quote(source)}",
                      f"rm -rf {held}"]
        lines.append(f"mount -t tmpfs -o mode=0755,size=1m tmpfs {shlex.quote(directory)}")
        lines += moves
    lines += ['rmdir "$stage"',
              f'exec setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=-all -- "$@"']
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", "\n".join(lines),
            "sh", *argv]
