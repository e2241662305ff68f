#!/usr/bin/env bash
# The paper tier's GPU stages in one run of under 10 minutes on one GPU (issue 19): a
# Llama-3.2-1B-shaped model with random weights (vocabulary 128,256, the rehearsal tokenizer), trained
# with CE and fused GEM for 12 steps through the pipeline's finetune (ZeRO-2 at world size 1, bf16,
# gradient checkpointing, sequence 2048), resumed from its step-6 checkpoint, sampled with vLLM on CUDA
# (at least 90% of samples must stop), scored by a sequence-classification reward model on cuda, and
# evaluated by evaluate_model with leaderboard_limit 20. Every check, stage and step time is printed
# and written as JSON. benchmarks/gpu_smoke.py says what each stage does and checks.
#
# Usage:  bash benchmarks/gpu_smoke.sh          on a GPU machine (writes into $OUT, else benchmarks/results/)
#         bash benchmarks/gpu_smoke.sh --dry    on a CPU: the same stages and checks, tiny shapes (the tests run it)
# Exit code 0 only if every check passed. Python: $PYTHON, else .venv-gpu/bin/python (full form) or
# .venv/bin/python (--dry) where they exist, else python3. Needs the data mirror (GEMSFT_DATA_MIRROR, else
# ../shared/data or shared/data): gsm8k/ and the six leaderboard tasks' files.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
name=gpu_smoke
for arg in "$@"; do [[ "$arg" == --dry ]] && name=gpu_smoke_dry; done
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  if [[ "$name" == gpu_smoke && -x .venv-gpu/bin/python ]]; then PYTHON=.venv-gpu/bin/python; fi
  if [[ "$name" == gpu_smoke_dry && -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; fi
fi
# Offline, caches inside the project (as the Makefile sets them); progress bars every 10 s at most.
export PYTHONPATH="$PWD/workflow${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_MININTERVAL=10
export HF_HOME="${HF_HOME:-$PWD/.cache/hf}" TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}"
export VLLM_CACHE_ROOT="${VLLM_CACHE_ROOT:-$PWD/.cache/vllm}"
{
  date -u
  if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; fi
  df -h "${TMPDIR:-/tmp}" | tail -1
} 2>&1 | tee "$out/$name.log"
"$PYTHON" benchmarks/gpu_smoke.py --out "$out/$name.json" "$@" 2>&1 | tee -a "$out/$name.log"
