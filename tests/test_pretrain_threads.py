"""`pretrain.threads` pins pretraining's torch threads, whatever the rule's threads: the study's
pre-trained model must be the calibration's (docs/calibration.md), and another thread count sums floats
in another order."""

import json

import pytest

from conftest import TINY_CORPUS, TINY_MODEL_CFG
from gemsft import files

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("pinned, expected", [(1, 1), (None, 2)])
def test_pretraining_runs_on_the_pinned_threads(tmp_path, pinned, expected):
    from gemsft.pretrain.base_model import pretrain

    corpus = tmp_path / "pretrain.jsonl"
    files.write_jsonl(corpus, [{"text": text} for text in TINY_CORPUS])
    cfg = {"seed": 0, "block_size": 16, "epochs": 1, "max_steps": 2, "per_device_batch_size": 2,
           "learning_rate": 1e-3, "logging_steps": 1, "save_steps": 100, "threads": pinned}
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the rule's threads under profiles/local
    try:
        metrics = pretrain(corpus, tmp_path / "base", tmp_path / "ckpt", {"vocab_size": 300, **TINY_MODEL_CFG},
                           cfg, tmp_path / "metrics.json")
    finally:
        torch.set_num_threads(before)
    assert metrics["threads"] == expected
    assert json.loads((tmp_path / "metrics.json").read_text())["threads"] == expected


def test_the_study_and_its_calibration_pretrain_on_the_same_threads():
    import yaml

    from conftest import REPO

    study, calibration = (yaml.safe_load((REPO / "config" / name).read_text()) for name in ("study.yaml", "calibration.yaml"))
    assert study["pretrain"]["threads"] == calibration["pretrain"]["threads"] == 1
