"""The process forked for one program: it isolates itself, then launches the program.

See docs/sandbox.md, "Per program" and "Pass token". Runs in the zygote's child only.
"""

from __future__ import annotations

import os
import resource
import signal
import sys

from .audit import make_audit_hook
from .limits import (DETAIL_CAP_CHARS, FILE_SIZE_LIMIT_BYTES, MEMORY_LIMIT_BYTES, NOFILE_LIMIT,
                     NPROC_LIMIT)

# Tracebacks of a program's exceptions start at the launcher's frame, which is in this file.
_THIS_FILE = os.path.abspath(__file__)


def become(uid: int) -> None:
    """Drop every group and set real, effective and saved uid and gid to ``uid``."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _report_exception(rfd: int, exc: BaseException, write=os.write,
                      kinds=(SystemExit, MemoryError, AssertionError)) -> None:
    """Write the failure report (F = test failure or early exit, E = error) and a traceback.

    ``write`` and the exception classes in ``kinds`` are passed in as bound before the
    program ran, since it may have replaced ``os.write`` or the builtin exception names.
    """
    system_exit, memory_error, assertion_error = kinds
    try:
        if isinstance(exc, system_exit):
            kind, detail = b"F", f"SystemExit({exc.code!r}) raised before the program completed"
        elif isinstance(exc, memory_error):
            kind, detail = b"E", "MemoryError"
        else:
            kind = b"F" if isinstance(exc, assertion_error) else b"E"
            try:
                message = str(exc).strip().splitlines()
            except BaseException:
                message = ["<unprintable>"]
            detail = type(exc).__name__ + (f": {message[-1]}" if message else "")
            try:
                import traceback

                tb = exc.__traceback__  # drop the launcher's own frames
                while tb is not None and tb.tb_frame.f_code.co_filename == _THIS_FILE:
                    tb = tb.tb_next
                text = "".join(traceback.format_exception(type(exc), exc, tb))
                write(2, text.encode("utf-8", "replace")[-16384:])
            except BaseException:
                pass
        write(rfd, kind + detail[:DETAIL_CAP_CHARS].encode("utf-8", "replace"))
    except BaseException:
        write(rfd, b"E" + type(exc).__name__.encode("ascii", "replace")[:100])


def run_child(z, source, timeout_s, jobdir, out_w, err_w, res_w, tok_r) -> None:
    """Runs in the child the zygote ``z`` forked: isolate, then run the program. Never returns."""
    _exit = os._exit
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a plain python run
        os.dup2(z.devnull_r, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        keep = sorted((res_w, tok_r))
        os.closerange(3, keep[0])
        os.closerange(keep[0] + 1, keep[1])
        os.closerange(keep[1] + 1, os.sysconf("SC_OPEN_MAX"))
        cpu = int(timeout_s) + 2
        for limit, value in ((resource.RLIMIT_AS, MEMORY_LIMIT_BYTES),
                             (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                             (resource.RLIMIT_NPROC, NPROC_LIMIT),
                             (resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT_BYTES),
                             (resource.RLIMIT_CORE, 0),
                             (resource.RLIMIT_NOFILE, NOFILE_LIMIT)):
            soft, hard = value if isinstance(value, tuple) else (value, value)
            resource.setrlimit(limit, (soft, hard))
        os.chdir(jobdir)
        os.umask(0o077)
        if z.uid is not None:
            become(z.uid)
        os.environ.clear()
        os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                           "HOME": jobdir, "TMPDIR": jobdir, "PYTHONHASHSEED": "0",
                           "PYTHONDONTWRITEBYTECODE": "1"})
        path = os.path.join(jobdir, "program.py")
        with open(path, "w", encoding="utf-8", errors="replace") as f:
            f.write(source)
        import builtins
        import types

        module = types.ModuleType("__main__")
        module.__file__ = path
        module.__builtins__ = builtins
        sys.modules["__main__"] = module
        sys.argv = [path]
        try:
            code = compile(source, path, "exec", dont_inherit=True)
        except BaseException as exc:  # SyntaxError, ValueError (NUL bytes), MemoryError...
            _report_exception(res_w, exc)
            _exit(1)
        del source
        sys.addaudithook(make_audit_hook(strict=not z.caps["proc_hidden"]))
        _launch(code, module.__dict__, res_w, tok_r)
    except BaseException as exc:
        try:
            os.write(res_w, b"S" + repr(exc).encode("utf-8", "replace")[:500])
        finally:
            _exit(70)
    finally:
        _exit(70)


def _launch(code, namespace, rfd, tfd) -> None:
    # Bind everything needed after the program to locals first: the program may replace
    # builtins, module attributes or this module's globals, but not this frame's locals.
    exec_, read, close, write, exit_, getpid, sys_ = (
        exec, os.read, os.close, os.write, os._exit, os.getpid, sys)
    base_exception, report = BaseException, _report_exception
    kinds = (SystemExit, MemoryError, AssertionError)
    pid = getpid()
    try:
        # The token is an unnamed temporary on this frame's value stack while the program
        # runs; it gets a name only once exec() has returned normally.
        token = (read(tfd, 64), close(tfd), exec_(code, namespace))[0]
    except base_exception as exc:
        try:
            if getpid() == pid:  # a copy forked by the program must not speak for it
                for stream in (sys_.stdout, sys_.stderr):
                    try:
                        stream.flush()
                    except base_exception:
                        pass
                report(rfd, exc, write, kinds)
        finally:
            exit_(1)
    if getpid() != pid:  # a fork made by the program completed; only the original reports
        exit_(1)
    for stream in (sys_.stdout, sys_.stderr):
        try:
            stream.flush()
        except base_exception:
            pass
    write(rfd, token)
    exit_(0)

