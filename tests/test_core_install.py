"""The library core: `pip install .` with no extra gives gemsft.losses, the objective registry and the
model-free metrics on torch (and numpy) alone (docs/library.md).

A fresh virtual environment gets the project's wheel, built from pyproject.toml, and torch's and
numpy's installed distributions (their files and metadata, as pip would have laid them out, linked
from this environment: no download). Nothing else is in it, so an import of transformers, Snakemake,
vLLM or lm-eval anywhere in the core fails there.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = {"torch", "numpy"}


def requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")


def closure(names: set[str]) -> set[str]:
    """The installed distributions `names` need, transitively (requirements without an extra marker
    whose environment marker holds here)."""
    from packaging.requirements import Requirement

    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in md.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name.lower().replace("_", "-"))
    return seen


def link_distribution(name: str, site: Path) -> None:
    """Lay out an installed distribution's top-level files in `site` by symlink, as pip would have."""
    dist = md.distribution(name)
    origin = Path(dist.locate_file(""))
    tops = {Path(f).parts[0] for f in dist.files or [] if not Path(f).parts[0].startswith("..")}
    for top in tops:
        target = site / top
        if (origin / top).exists() and not target.exists():
            target.symlink_to(origin / top)


def build_wheel(tmp_path: Path) -> Path:
    """The project's wheel, built from a copy of what packaging reads (the checkout stays clean)."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "workflow/gemsft", src / "workflow/gemsft",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, text=True)
    (wheel,) = (tmp_path / "dist").glob("gemsft-*.whl")
    return wheel


@pytest.fixture(scope="module")
def core_env(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("core")
    wheel = build_wheel(tmp)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    with zipfile.ZipFile(wheel) as archive:  # a pure-Python wheel installs by unpacking
        archive.extractall(site)
    for name in closure(CORE):
        link_distribution(name, site)
    return venv


def test_the_core_requires_only_torch_and_numpy(core_env):
    python = core_env / "bin/python"
    script = ("import importlib.metadata as md, re; "
              "print('\\n'.join(r for r in md.requires('gemsft') if 'extra ==' not in r))")
    out = subprocess.run([str(python), "-c", script], check=True, capture_output=True, text=True).stdout
    assert {requirement_name(r) for r in out.split()} == CORE


def test_the_core_computes_gem_without_the_pipelines_packages(core_env):
    script = r"""
import sys, torch
from gemsft.losses import gem_loss, fused_linear_gem_loss, gem_listing1_loss
from gemsft.objectives import OBJECTIVES
from gemsft.metrics import pass_at_k
torch.manual_seed(0)
hidden, weight = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(11, 8, dtype=torch.float64)
labels = torch.randint(0, 11, (2, 6))
labels[0, :2] = -100
logits = hidden @ weight.T
ours = gem_loss(logits, labels[:, 1:], beta=0.7, h="linear")
listing = gem_listing1_loss(torch.cat([logits, logits[:, :1]], 1), labels, beta=0.7, h="linear")
fused = fused_linear_gem_loss(hidden.reshape(-1, 8), weight, labels[:, 1:].reshape(-1), beta=0.7, h="linear")
assert torch.allclose(ours, listing) and torch.allclose(ours, fused), (ours, listing, fused)
assert "gem" in OBJECTIVES and abs(pass_at_k(10, 3, 1) - 0.3) < 1e-12
from gemsft.metrics import ngram_diversity, extract_math_answer
texts = ["the cat sat on the mat", "a dog ran in the park", "the cat sat on a hat"]
assert 0 < ngram_diversity(texts) <= 100
assert extract_math_answer("so the answer is **42**.") == 42
for missing in ("transformers", "snakemake", "vllm", "lm_eval", "pandas", "trl", "datasets"):
    assert missing not in sys.modules, missing
    try:
        __import__(missing)
    except ImportError:
        pass
    else:
        raise AssertionError(missing + " is installed in the core environment")
print("ok")
"""
    result = subprocess.run([str(core_env / "bin/python"), "-c", script], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
