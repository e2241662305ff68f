"""The audit hook that keeps a program away from its pass token (docs/sandbox.md, "Pass token").

Installed in the program's process just before the program starts; hooks cannot be removed.
"""


def make_audit_hook(strict: bool):
    """The hook that guards the pass token.

    Everything it uses is bound here, so that it reads no global or builtin name when it
    runs (the program may have replaced those); it calls only C functions. ``strict`` is
    for a sandbox where procfs is visible: then paths with a ``..`` component (e.g.
    ``/dev/fd/../mem``) and starting other programs (which could plant a symlink to
    ``/proc/self`` unseen by the hook) are refused as well.
    """
    blocked_events = {
        "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace",
        "sys.setprofile", "sys._current_frames", "sys._current_exceptions"}
    if strict:
        blocked_events |= {"os.exec", "os.posix_spawn", "os.spawn", "os.system",
                           "subprocess.Popen"}
    blocked_events = frozenset(blocked_events)
    blocked_components = ("proc", "..") if strict else ("proc",)
    blocked_modules = frozenset({"ctypes", "_ctypes"})
    path_events = frozenset({"open", "os.chdir", "os.symlink", "os.link", "os.listdir",
                             "os.scandir", "os.chroot"})
    denied = PermissionError
    str_, bytes_, int_, type_ = str, bytes, int, type
    startswith, partition, split, bsplit = str.startswith, str.partition, str.split, bytes.split
    encode = str.encode
    blocked_bytes = tuple(encode(c) for c in blocked_components)

    def hook(event, args):
        if event in blocked_events or startswith(event, "ctypes."):
            raise denied(f"sandbox: {event} is not allowed")
        if event == "import":
            top = partition(args[0], ".")[0] if type_(args[0]) is str_ else ""
            if top in blocked_modules or startswith(top, "_test"):
                raise denied(f"sandbox: importing {top} is not allowed")
        elif event in path_events:
            for path in args[:2]:
                t = type_(path)
                if t is int_ or path is None:
                    continue
                if t is str_:
                    parts, bad = split(path, "/"), blocked_components
                elif t is bytes_:
                    parts, bad = bsplit(path, b"/"), blocked_bytes
                elif strict:  # a path-like object could answer differently when asked again
                    raise denied(f"sandbox: {event} needs a str, bytes or int path")
                else:  # procfs is not mounted at all; the check is only a second line
                    continue
                for component in bad:
                    if component in parts:
                        raise denied(f"sandbox: {event} of this path is not allowed")

    return hook

