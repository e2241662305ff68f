"""A real, single-node SLURM cluster on this machine for the tests (tests/test_slurm.py).

`local_slurm_cluster()` installs Debian 12's SLURM 22.05 and munge packages when they are missing,
writes a minimal /etc/slurm/slurm.conf (the executor plugin's job steps only find the config there:
they drop SLURM_CONF with every other SLURM_* variable), starts munged, slurmctld and `slurmd -N
localhost`, waits until `sinfo` shows the node idle and yields. On the way out, even when the body
failed, it cancels the cluster's jobs, stops exactly the daemons it started (by the pids in their pid
files) and puts back the slurm.conf it found (or removes its own). A munged that already works is
used and left running; an already running slurmctld or slurmd is an error, not something to take over.

It needs root (apt, /etc, daemons running as root). Without it, or when apt cannot install the
packages, it raises `SlurmClusterError`: a test that needs the cluster fails, it does not pass.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

PACKAGES = ("slurm-wlm", "munge", "slurmctld", "slurmd", "slurm-client")
# The binaries the cluster needs; any missing one means the packages are (partly) missing.
BINARIES = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sinfo",
            "/usr/bin/squeue", "/usr/bin/sbatch", "/usr/bin/srun", "/usr/bin/scancel")
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")
MUNGE_PID = MUNGE_RUN / "munged.pid"
PARTITION = "debug"
NODE = "localhost"


class SlurmClusterError(RuntimeError):
    """The local cluster could not be installed or started."""


@dataclass
class SlurmCluster:
    """What the body of `local_slurm_cluster` gets: where the cluster's files are."""

    partition: str
    node: str
    cpus: int
    mem_mb: int
    workdir: Path  # state, spool, pid and log files of this cluster
    started: list[tuple[int, str]] = field(default_factory=list)  # (pid, name) of the daemons started

    def alive(self) -> list[tuple[int, str]]:
        """The started daemons still running (exited ones waiting to be reaped do not count)."""
        return [(pid, name) for pid, name in self.started if _alive(pid) and _comm(pid) == name]

    @property
    def conf(self) -> Path:
        return SLURM_CONF

    def logs(self) -> str:
        """The daemons' logs, for a failing test's message."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.workdir / name
            text = path.read_text(errors="replace")[-3000:] if path.exists() else "(none)"
            parts.append(f"--- {name}\n{text}")
        return "\n".join(parts)


def _env() -> dict[str, str]:
    """The environment of the SLURM commands: /etc/slurm/slurm.conf, not another SLURM_CONF."""
    return {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}


def _run(cmd: list[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmClusterError(f"{' '.join(cmd)}: {exc}") from exc
    if check and result.returncode != 0:
        raise SlurmClusterError(f"{' '.join(cmd)} exited with {result.returncode}:\n"
                                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def _missing_binaries() -> list[str]:
    return [path for path in BINARIES if not os.access(path, os.X_OK)]


def ensure_packages(timeout: float = 900) -> None:
    """Install the Debian packages if any binary is missing (`apt-get update` once if needed)."""
    if not _missing_binaries():
        return
    if os.geteuid() != 0:
        raise SlurmClusterError(f"SLURM is not installed ({', '.join(_missing_binaries())} missing) and "
                                f"installing it needs root: apt-get install -y {' '.join(PACKAGES)}")
    if not shutil.which("apt-get"):
        raise SlurmClusterError("SLURM is not installed and there is no apt-get to install it with")
    env = {**_env(), "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    errors = []
    for attempt in ("install", "update", "install"):
        cmd = install if attempt == "install" else ["apt-get", "update", "-q"]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise SlurmClusterError(f"{' '.join(cmd)} did not finish in {timeout:.0f} s") from None
        if result.returncode == 0 and attempt == "install":
            break
        if result.returncode != 0:
            errors.append(f"{' '.join(cmd)} exited with {result.returncode}: {result.stderr[-1500:]}")
    if _missing_binaries():
        raise SlurmClusterError("installing SLURM failed; still missing: "
                                f"{', '.join(_missing_binaries())}\n" + "\n".join(errors))


def slurm_conf(workdir: Path, cpus: int, mem_mb: int) -> str:
    """A minimal single-node configuration: no accounting, no cgroups, state in `workdir`."""
    return f"""\
# Written by tests/slurm_cluster.py for a single-node test cluster; removed (or the previous file
# restored) when the test ends.
ClusterName=gemsft-test
SlurmctldHost={NODE}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# Trust the node line below instead of what slurmd detects, so the node never drains for it.
SlurmdParameters=config_overrides
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation={workdir}/state
SlurmdSpoolDir={workdir}/spool
SlurmctldPidFile={workdir}/slurmctld.pid
SlurmdPidFile={workdir}/slurmd.pid
SlurmctldLogFile={workdir}/slurmctld.log
SlurmdLogFile={workdir}/slurmd.log
NodeName={NODE} NodeHostname={NODE} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


def _default_mem_mb() -> int:
    """Half of the machine's memory, what a job may ask for (`--mem`) on the test node."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return max(1000, int(line.split()[1]) // 1024 // 2)
    return 4000


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pids_named(name: str) -> set[int]:
    """Live processes called `name`."""
    return {int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and _comm(int(p.name)) == name and _alive(int(p.name))}


def slurm_processes() -> dict[str, set[int]]:
    """Live SLURM daemons and job step daemons on this machine."""
    return {name: pids for name in ("slurmctld", "slurmd", "slurmstepd") if (pids := _pids_named(name))}


def _wait_for_pid(pid_file: Path, name: str, timeout: float, log: Path | None = None) -> int:
    """The pid of the daemon `name` once its pid file names a live process of that name."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The daemon creates its pid file before writing the pid: an empty file means "not yet".
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().split()[0])
            if _alive(pid) and _comm(pid) == name:
                return pid
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise SlurmClusterError(f"{name} did not start (no live pid in {pid_file} after {timeout:.0f} s)\n{tail}")


def _stop(pid: int, name: str, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout`, for a process that is still the daemon we started."""
    if not _alive(pid) or _comm(pid) != name:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _munge_works() -> bool:
    if not (shutil.which("munge") and shutil.which("unmunge")):
        return False
    try:
        encoded = subprocess.run(["munge", "-n"], capture_output=True, timeout=5)
        if encoded.returncode != 0:
            return False
        return subprocess.run(["unmunge"], input=encoded.stdout, capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _ensure_munge_key() -> None:
    """The package's postinst creates the key; make one like it if it is missing."""
    if MUNGE_KEY.exists():
        return
    munge = pwd.getpwnam("munge")
    MUNGE_KEY.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(MUNGE_KEY.parent, munge.pw_uid, munge.pw_gid)
    MUNGE_KEY.write_bytes(os.urandom(1024))
    os.chown(MUNGE_KEY, munge.pw_uid, munge.pw_gid)
    MUNGE_KEY.chmod(0o400)


def _start_munged(timeout: float) -> int:
    munge = pwd.getpwnam("munge")
    MUNGE_RUN.mkdir(parents=True, exist_ok=True)
    os.chown(MUNGE_RUN, munge.pw_uid, munge.pw_gid)
    with contextlib.suppress(FileNotFoundError):
        MUNGE_PID.unlink()  # a stale pid file from a munged that is gone (it does not work, see caller)
    _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], timeout=timeout)
    pid = _wait_for_pid(MUNGE_PID, "munged", timeout)
    deadline = time.monotonic() + timeout
    while not _munge_works():
        if time.monotonic() > deadline:
            raise SlurmClusterError("munged started but `munge -n | unmunge` fails")
        time.sleep(0.1)
    return pid


def _wait_idle(cluster: SlurmCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        result = _run(["sinfo", "-h", "-N", "-p", cluster.partition, "-o", "%N %t"], check=False)
        state = result.stdout.strip()
        if result.returncode == 0 and state.split() == [cluster.node, "idle"]:
            return
        time.sleep(0.2)
    raise SlurmClusterError(f"node {cluster.node} not idle after {timeout:.0f} s (sinfo: {state!r})\n"
                            f"{cluster.logs()}")


def _cancel_jobs(timeout: float = 15) -> None:
    """Cancel whatever is still queued or running on the test cluster and wait until it is gone."""
    result = _run(["squeue", "-h", "-o", "%A"], check=False, timeout=10)
    job_ids = result.stdout.split() if result.returncode == 0 else []
    if not job_ids:
        return
    _run(["scancel", *job_ids], check=False, timeout=10)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = _run(["squeue", "-h", "-o", "%A"], check=False, timeout=10)
        if result.returncode != 0 or not result.stdout.split():
            return
        time.sleep(0.2)


@contextlib.contextmanager
def local_slurm_cluster(cpus: int = 2, mem_mb: int | None = None, start_timeout: float = 30,
                        install_timeout: float = 900) -> Iterator[SlurmCluster]:
    """A running single-node cluster (partition `debug`, node `localhost`) for the body's duration."""
    if os.geteuid() != 0:
        raise SlurmClusterError("the local SLURM cluster needs root (apt-get install, /etc/slurm, daemons)")
    ensure_packages(timeout=install_timeout)
    running = {name: _pids_named(name) for name in ("slurmctld", "slurmd")}
    if any(running.values()):
        raise SlurmClusterError(f"SLURM daemons already run here ({running}); not starting a test cluster "
                                "beside them")
    stepds_before = _pids_named("slurmstepd")

    workdir = Path(tempfile.mkdtemp(prefix="gemsft-slurm-"))
    for sub in ("state", "spool"):
        (workdir / sub).mkdir()
    cluster = SlurmCluster(partition=PARTITION, node=NODE, cpus=cpus, mem_mb=mem_mb or _default_mem_mb(),
                           workdir=workdir)
    backup = workdir / "slurm.conf.orig"
    had_conf = SLURM_CONF.exists()
    created_etc_dir = not SLURM_CONF.parent.exists()
    started = cluster.started  # (pid, name), in start order
    failed = True
    try:
        if had_conf:
            shutil.copy2(SLURM_CONF, backup)
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(slurm_conf(workdir, cluster.cpus, cluster.mem_mb))

        if not _munge_works():
            _ensure_munge_key()
            started.append((_start_munged(start_timeout), "munged"))
        _run(["/usr/sbin/slurmctld"], timeout=start_timeout)
        started.append((_wait_for_pid(workdir / "slurmctld.pid", "slurmctld", start_timeout,
                                      workdir / "slurmctld.log"), "slurmctld"))
        _run(["/usr/sbin/slurmd", "-N", NODE], timeout=start_timeout)
        started.append((_wait_for_pid(workdir / "slurmd.pid", "slurmd", start_timeout,
                                      workdir / "slurmd.log"), "slurmd"))
        _wait_idle(cluster, start_timeout)
        yield cluster
        failed = False
    finally:
        try:
            # A daemon that wrote its pid file too late for _wait_for_pid is this cluster's as well.
            for name in ("slurmctld", "slurmd"):
                with contextlib.suppress(OSError, ValueError):
                    pid = int((workdir / f"{name}.pid").read_text().split()[0])
                    if (pid, name) not in started and _alive(pid) and _comm(pid) == name:
                        started.append((pid, name))
            if any(name == "slurmctld" for _, name in started):
                _cancel_jobs()
            for name in ("slurmd", "slurmctld", "munged"):
                for pid in [pid for pid, started_name in started if started_name == name]:
                    _stop(pid, name)
            # Job step daemons of this cluster's jobs (none should be left after the cancel).
            for pid in _pids_named("slurmstepd") - stepds_before:
                _stop(pid, "slurmstepd", timeout=5)
        finally:
            if had_conf:
                shutil.copy2(backup, SLURM_CONF)
            else:
                SLURM_CONF.unlink(missing_ok=True)
                if created_etc_dir:
                    with contextlib.suppress(OSError):
                        SLURM_CONF.parent.rmdir()
            if not failed:
                shutil.rmtree(workdir, ignore_errors=True)
