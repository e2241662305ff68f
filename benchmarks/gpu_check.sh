#!/usr/bin/env bash
# The GPU checks of issues 5 and 6 in one run, for a session lent a GPU machine (device tool):
#   1. training throughput and peak memory of CE vs GEM (unfused and fused) through the project's
#      trainer, on a Llama-3.2-1B-shaped model with random weights, bf16, gradient checkpointing, the
#      paper's sequence length of 2048 (benchmarks/train_throughput.py; target GEM >= 0.97x CE);
#   2. the loss alone at V = 128256: torch CE, the paper's Listing 1, gem_loss and the fused loss
#      (benchmarks/loss_bench.py --device cuda).
# Usage there:  bash benchmarks/gpu_check.sh   (writes into $OUT, else benchmarks/results/)
# Uses the machine's own python3 (PyTorch with CUDA, transformers, accelerate), not .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
export PYTHONPATH="$PWD/workflow${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python="${PYTHON:-python3}"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$python" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$out/gpu_check_env.txt"
"$python" benchmarks/train_throughput.py --steps "${STEPS:-120}" --out "$out/gpu_train_throughput.json" 2>&1 \
  | grep -v "it/s]\|s/it]" | tee "$out/gpu_train_throughput.txt"
for dtype in bfloat16 float32; do
  "$python" benchmarks/loss_bench.py --device cuda --dtype "$dtype" --out "$out/gpu_loss_bench_$dtype.txt" 2>&1 \
    | tee "$out/gpu_loss_bench_$dtype.log"
done
