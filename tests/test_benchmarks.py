"""The benchmark scripts stay runnable: each GPU-sized one runs in its small CPU form here (the GPU
form is benchmarks/gpu_check.sh, run when a session is lent a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_train_throughput_smoke_runs_every_variant_through_the_trainer(tmp_path):
    out = tmp_path / "throughput.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks/train_throughput.py"), "--smoke", "--steps", "4",
                             "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    table = json.loads(out.read_text())
    assert [r["variant"] for r in table["results"]] == ["ce", "gem", "gem_fused", "ce_fused"]
    assert all(r["tokens_per_s"] > 0 and r["timed_steps"] == 2 for r in table["results"])
    assert table["results"][0]["throughput_ratio"] == 1.0
    assert "ce_fused" in result.stdout and "tokens/s" in result.stdout
