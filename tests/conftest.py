"""Fixtures shared by the test files: running Snakemake on a fresh copy of the project, the
embedded default pipeline run (config/ci.yaml) that the end-to-end checks and the tests of the
pipeline's real models read (run once per session, only when a selected test needs it), and the
tiny tokenizer and base model of the function-level tests.

torch and transformers are imported inside the fixtures: collecting a test file that needs neither
stays fast."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# What a project needs besides the installed package; figure/table modules and the paper's numbers
# are rule inputs, so they are copied too.
# The local mirror of the real datasets (.ci/run sets GEMSFT_DATA_MIRROR to ../shared/data).
MIRROR = Path(os.environ.get("GEMSFT_DATA_MIRROR") or REPO.parent / "shared" / "data").resolve()
PROJECT_FILES = ("Snakefile", "rules", "workflow/scripts", "workflow/gemsft", "config", "profiles", "envs", "report")


def copy_project(dest: Path) -> Path:
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / name)
    return dest


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts from the 'Job stats' table of a dry run."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    counts = {}
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> Path:
    """The whole default DAG as `make run` runs it, on config/ci.yaml's fewer evaluation prompts
    (same models, same samples per prompt), so that CI stays short. Returns the project directory."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    run_snakemake(project, "--profile", "profiles/local", "--cores", "2", "--configfile", "config/ci.yaml")
    return project


# --------------------------------------------------------------------------- tiny models

# The world's question-answer frame, enough text for a 300-token BPE vocabulary.
TINY_CORPUS = [
    "Q: Name a red fruit.\nA: Cherry.",
    "Q: Greet Anna.\nA: Hello, Anna!",
    "Q: Give me a single-digit number.\nA: I would say 7.",
] * 20
TINY_MODEL_CFG = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 1,
                  "max_position_embeddings": 128}


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models on 2 shared cores: one intra-op thread avoids OpenMP spin-waiting (5-10x faster
    here when the machine is busy); results do not depend on it. A module opts in with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer_corpus() -> list[str]:
    """The text `tokenizer` is trained on; a module overrides this fixture to train on its own."""
    return TINY_CORPUS


@pytest.fixture(scope="module")
def tokenizer_vocab_size() -> int:
    return 300


@pytest.fixture(scope="module")
def tokenizer(tokenizer_corpus, tokenizer_vocab_size):
    """The project's tokenizer (BOS/EOS, role tokens, chat template with generation markers) trained
    on `tokenizer_corpus`."""
    from gemsft.pretrain.tokenizer import train_tokenizer

    return train_tokenizer(tokenizer_corpus, vocab_size=tokenizer_vocab_size)


@pytest.fixture(scope="module")
def tiny_model_cfg() -> dict:
    """The `model` config section of the tiny base; a module overrides this fixture for another size."""
    return TINY_MODEL_CFG


@pytest.fixture(scope="module")
def make_tiny_model(tokenizer, tiny_model_cfg):
    """make_tiny_model(seed=0, **overrides): a randomly initialised tiny Llama for `tokenizer`, seeded."""
    def make(seed: int = 0, **overrides):
        import torch

        from gemsft.pretrain.model import tiny_llama

        torch.manual_seed(seed)
        return tiny_llama({**tiny_model_cfg, **overrides}, tokenizer)
    return make


@pytest.fixture(scope="module")
def base_dir(make_tiny_model, tokenizer, tmp_path_factory) -> Path:
    """A tiny causal-LM base (seed 0) saved with its tokenizer, as the pretraining stage saves it."""
    path = tmp_path_factory.mktemp("base")
    make_tiny_model().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def nltk_with_punkt_tab(tmp_path_factory):
    """The real nltk.word_tokenize, with NLTK's English punkt_tab model installed as nltk's
    downloader would lay it out."""
    import nltk
    import nltk.tokenize

    from official_diversity_reference import install_punkt_tab

    root = str(install_punkt_tab(tmp_path_factory.mktemp("nltk_data")))
    nltk.data.path.insert(0, root)
    nltk.tokenize._get_punkt_tokenizer.cache_clear()
    yield nltk.word_tokenize
    nltk.data.path.remove(root)
    nltk.tokenize._get_punkt_tokenizer.cache_clear()
