"""evaluation.sandbox: strict refuses to run model code where it cannot be isolated, best_effort runs
it and says at which isolation level (docs/sandbox.md, "Isolation levels").

The refusal is shown twice: with the kernel refusing user namespaces (a nested user namespace whose
user.max_user_namespaces is used up, so the sandbox's own unshare fails as it would on a machine
with them disabled), and with the module switches that turn the namespaces off. In both, a program
that would write to the caller's files shows that nothing ran under strict, and that it does run
(and reaches those files) under best_effort.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from gemsft.config import validate_config
from gemsft.evaluate.code import evaluate_code
from gemsft.evaluate.sandbox import SandboxUnavailable, isolation, run_programs, sandbox_capabilities
from gemsft.evaluate.sandbox import pool as sandbox_pool

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "config/schema/config.schema.yaml")

HELPER = """
import json, os, sys
from gemsft.execution import SandboxUnavailable, run_programs
marker = sys.argv[1]
program = f"open({marker!r}, 'w').write('escaped')"
out = {"uid": os.getuid()}
try:
    run_programs([program], timeout_s=5.0)
    out["refused"] = None
except SandboxUnavailable as e:
    out["refused"] = str(e)
out["ran_under_strict"] = os.path.exists(marker)
(r,) = run_programs([program], timeout_s=5.0, sandbox="best_effort")
out.update(best_effort=r.status, isolation=r.isolation, ran_under_best_effort=os.path.exists(marker))
print(json.dumps(out))
"""


def without_user_namespaces(argv: list[str]) -> list[str]:
    """``argv`` as uid 65534 of a user namespace below one whose user.max_user_namespaces is 1, a
    limit its own child namespace already uses up: any further unshare(CLONE_NEWUSER) fails."""
    inner = ["unshare", "--user", "--map-user=65534", "--map-group=65534", "--", *argv]
    return ["unshare", "--user", "--map-root-user", "--", "sh", "-c",
            'echo 1 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh", *inner]


def test_strict_refuses_where_the_kernel_gives_no_user_namespace(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("no unshare (util-linux)")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"this machine has no user namespaces to take away: {probe.stderr.strip()}")
    marker = tmp_path / "marker"
    proc = subprocess.run(without_user_namespaces([sys.executable, "-c", HELPER, str(marker)]), cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["uid"] == 65534  # not root: the sandbox tries a user namespace, and the kernel says no
    message = out["refused"]
    assert message and "\n" not in message
    for part in ("without network, file-system or process isolation",
                 "no user namespace may be created (user.max_user_namespaces is 0 or used up)",
                 "No space left on device", "sysctl kernel.unprivileged_userns_clone=1",
                 "evaluation.sandbox: best_effort"):
        assert part in message, (part, message)
    assert not out["ran_under_strict"]
    # The control: the same program, run without isolation, does reach the caller's file.
    assert (out["best_effort"], out["isolation"], out["ran_under_best_effort"]) == ("passed", "none", True)


@pytest.fixture
def open_directory():
    """A directory anyone may write to (as root, programs run as another uid)."""
    path = tempfile.mkdtemp(prefix="gemsft-open-")
    os.chmod(path, 0o777)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_strict_refuses_with_the_namespaces_switched_off(monkeypatch, open_directory):
    monkeypatch.setattr(sandbox_pool, "_NAMESPACES", ())
    monkeypatch.setattr(sandbox_pool, "_USER_NAMESPACE", False)
    marker = open_directory / "marker"
    program = f"open({str(marker)!r}, 'w').write('escaped')"
    with pytest.raises(SandboxUnavailable) as err:
        run_programs([program], timeout_s=5.0)
    message = str(err.value)
    assert "\n" not in message and "without network, file-system or process isolation" in message
    assert ("CAP_SYS_ADMIN" if os.geteuid() == 0 else "kernel.unprivileged_userns_clone=1") in message
    assert not marker.exists()
    (r,) = run_programs([program], timeout_s=5.0, sandbox="best_effort")
    assert r.passed and marker.exists(), (r.detail, r.stderr)
    assert r.isolation == ("partial" if os.geteuid() == 0 else "none")  # as root: the uid drop only


def test_sandbox_mode_must_be_strict_or_best_effort():
    with pytest.raises(ValueError, match=r"^sandbox \(evaluation.sandbox\) must be one of strict, "
                                         r"best_effort, not 'lenient'$"):
        run_programs(["pass"], sandbox="lenient")


def test_this_machine_isolates_and_says_how():
    caps = sandbox_capabilities()
    assert caps["isolation"] == ("root-namespaces" if os.geteuid() == 0 else "user-namespaces"), caps["notes"]
    assert caps["refusal"] is None


def test_the_code_evaluation_records_the_isolation_level():
    record = {"id": "code/add/3", "entry_point": "add_3", "tests": ["assert add_3(1) == 4"]}
    samples = [{"prompt_id": record["id"], "sample_index": i, "text": text, "finish_reason": "stop"}
               for i, text in enumerate(["def add_3(x):\n    return x + 3", "def add_3(x):\n    return x"])]
    _, _, executions = evaluate_code([record], samples, "code", [1], timeout_s=5, sandbox="best_effort")
    assert [(e["passed"], e["isolation"]) for e in executions] == [
        (True, sandbox_capabilities()["isolation"]), (False, sandbox_capabilities()["isolation"])]


def test_the_config_defaults_to_strict():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert config["evaluation"]["sandbox"] == "strict"
    del config["evaluation"]["sandbox"]
    validate_config(config, SCHEMA)  # the schema's default fills it in
    assert config["evaluation"]["sandbox"] == "strict"
    config["evaluation"]["sandbox"] = "lenient"
    with pytest.raises(ValueError, match=r"^invalid config at 'evaluation.sandbox': 'lenient' is not one of"):
        validate_config(config, SCHEMA)


# ----------------------------------------------------------------------------------------
# The levels and the refusal line, from reported capabilities
# ----------------------------------------------------------------------------------------

BASE = {"root": False, "user_ns": False, "mount_ns": False, "net_ns": False, "pid_ns": False,
        "fs_read_only": False, "seccomp": False, "user_ns_error": None, "uid": None, "notes": []}
FULL_USERNS = dict(BASE, user_ns=True, mount_ns=True, net_ns=True, pid_ns=True, fs_read_only=True, seccomp=True)


@pytest.mark.parametrize("caps, level, in_message", [
    (dict(BASE, root=True, mount_ns=True, net_ns=True, pid_ns=True, uid=2_000_000_123), "root-namespaces", None),
    (FULL_USERNS, "user-namespaces", None),
    (dict(BASE, user_ns_error="EPERM", notes=["user namespace: unshare(...): Operation not permitted"]), "none",
     "unprivileged user namespaces are disabled (user namespace: unshare(...): Operation not permitted)"),
    (dict(FULL_USERNS, fs_read_only=False, notes=["minimal root file system: mount /tmp: Permission denied"]),
     "partial", "without file-system isolation here: minimal root file system: mount /tmp: Permission denied; "
                "to get it: allow mounts in unprivileged user namespaces"),
    (dict(FULL_USERNS, seccomp=False, notes=["seccomp filter: no seccomp filter for riscv64"]), "partial",
     "without process isolation"),
    (dict(BASE, root=True, uid=65534, notes=["network namespace: unshare(CLONE_NEWNET): Operation not permitted"]),
     "partial", "give the process CAP_SYS_ADMIN"),
    (dict(BASE, root=True, mount_ns=True, net_ns=True, pid_ns=True), "partial",
     "no unprivileged uid could be set for programs"),
], ids=["root", "user_namespaces", "userns_disabled", "no_minimal_root", "no_seccomp", "root_in_docker",
        "root_without_uid"])
def test_isolation_level_and_refusal(caps, level, in_message):
    assert isolation.level(caps) == level
    message = isolation.refusal(caps)
    if in_message is None:
        assert message is None
    else:
        assert "\n" not in message and in_message in message, message
