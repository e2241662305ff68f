"""The hostile-program suite again, as an ordinary user: uid 65534 when the tests run as root.

`tests/test_sandbox_hostile.py` runs in this session as the current user; here it runs a second
time under `setpriv --reuid=65534 --regid=65534 --clear-groups` (gemsft.evaluate.sandbox.
unprivileged), so the sandbox takes its user-namespace path and every file, socket and listener
the programs attack belongs to their own uid. The interpreter lives in a pyenv install under /root
(mode 0700): the run gets a private mount namespace in which /root shows only that install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gemsft.evaluate.sandbox import unprivileged

REPO = Path(__file__).resolve().parents[1]
UID = unprivileged.UNPRIVILEGED_UID
PROBE = """
import os, gemsft.execution as ex
caps = ex.sandbox_capabilities()
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(os.getuid(), str(os.getgroups()).replace(" ", ""), status["CapEff"].strip(), caps["isolation"], caps["refusal"])
"""


@pytest.fixture(scope="module")
def as_nobody():
    """Runs a command as uid 65534 (HOME: a directory of its own) and returns the completed process."""
    if os.geteuid() != 0:
        pytest.skip(f"the tests run as uid {os.geteuid()}: test_sandbox_hostile.py already ran unprivileged")
    why = unprivileged.unavailable()
    if why:
        pytest.skip(f"cannot switch to uid {UID}: {why}")
    home = tempfile.mkdtemp(prefix="gemsft-home-")
    os.chown(home, UID, UID)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": home,
           "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}

    def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(unprivileged.command_line(argv), cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=timeout)

    try:
        yield run
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_hostile_suite_as_an_unprivileged_uid(as_nobody):
    probe = as_nobody([sys.executable, "-c", PROBE], timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    uid, groups, effective_caps, level, refusal = probe.stdout.split(maxsplit=4)
    # As a cluster user runs: its own uid and gid, no groups, no capability.
    assert (int(uid), groups, int(effective_caps, 16)) == (UID, "[]", 0)
    if level != "user-namespaces":
        pytest.skip(f"uid {UID} gets no user namespace here: {refusal.strip()}")
    suite = as_nobody([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs",
                       "tests/test_sandbox_hostile.py"], timeout=600)
    summary = suite.stdout.strip().splitlines()[-1] if suite.stdout.strip() else ""
    assert suite.returncode == 0, suite.stdout[-6000:] + suite.stderr[-3000:]
    assert re.search(r"\b\d+ passed\b", summary), summary
    assert not re.search(r"skipped|failed|error|deselected", summary), summary
