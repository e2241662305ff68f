"""gemsft.trl.GEMSFTTrainer: TRL's SFTTrainer data path (a `messages` dataset, TRL's chat-template
tokenisation and collator) with the pipeline's objective as the loss.

- Its gradients on a TRL batch equal those of the pipeline's ObjectiveTrainer and of the paper's
  Listing 1 (gemsft.losses.listing1, transcribed from liziniu/GEM) on the same batch.
- Under gradient accumulation, TRL's `num_items_in_batch` makes two micro-batches of unequal token
  counts give the full batch's gradient (the accumulation bug the official code warns of); the
  per-micro-batch mean the pipeline keeps (the paper's transformers 4.45 behaviour) does not.
- docs/trl.md's example runs as written, on the tiny model.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]

# Answers of different lengths, so micro-batches hold unequal numbers of trained tokens.
CHATS = [("Name a red fruit.", "Cherry."),
         ("Greet Anna.", "Hello, Anna! Hello, Anna! Hello, Anna!"),
         ("Give me a single-digit number.", "I would say 7."),
         ("Name a red fruit.", "Cherry. Cherry. Cherry. Cherry. Cherry. Cherry.")]


def messages_dataset():
    from datasets import Dataset

    return Dataset.from_list([{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                              for q, a in CHATS])


def sft_config(tmp_path, **overrides):
    from trl import SFTConfig

    settings = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=1, learning_rate=1e-3,
                    report_to=[], use_cpu=True, bf16=False, assistant_only_loss=True, seed=0, dataloader_num_workers=0)
    return SFTConfig(**{**settings, **overrides})


def gem_trainer(tmp_path, make_tiny_model, tokenizer, **kwargs):
    from gemsft.trl import GEMSFTTrainer

    return GEMSFTTrainer(model=make_tiny_model(seed=0), args=sft_config(tmp_path), train_dataset=messages_dataset(),
                         processing_class=tokenizer, beta=0.7, h="linear", **kwargs)


def trl_batch(trainer) -> dict:
    batch = next(iter(trainer.get_train_dataloader()))
    assert set(batch) >= {"input_ids", "attention_mask", "labels"}
    return {k: v for k, v in batch.items()}


def grads_of(model) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def assert_grads_close(a, b, atol=1e-6):
    assert len(a) == len(b) and a
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


def test_gradients_on_a_trl_batch_equal_the_pipeline_trainers_and_listing_1(tmp_path, make_tiny_model, tokenizer):
    from gemsft.losses import gem_listing1_loss
    from gemsft.objectives import get_objective
    from gemsft.train.trainer import ObjectiveTrainer, training_arguments

    trainer = gem_trainer(tmp_path, make_tiny_model, tokenizer, fused_loss=False)
    batch = trl_batch(trainer)
    assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()  # assistant-only mask applied

    model = trainer.model
    model.zero_grad()
    trainer.compute_loss(model, dict(batch)).backward()
    ours = grads_of(model)

    plain = make_tiny_model(seed=0)
    args = training_arguments({"epochs": 1, "per_device_batch_size": 4, "learning_rate": 1e-3}, tmp_path / "plain",
                              seed=0)
    pipeline = ObjectiveTrainer(model=plain, args=args, objective=get_objective("gem"), beta=0.7, fused_loss=False)
    pipeline.compute_loss(plain, dict(batch)).backward()
    assert_grads_close(ours, grads_of(plain))

    listing = make_tiny_model(seed=0)
    logits = listing(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    gem_listing1_loss(logits, batch["labels"], beta=0.7, h="linear").backward()  # shifts inside, as printed
    assert_grads_close(ours, grads_of(listing))


def test_the_fused_loss_gives_the_same_gradients_through_trl(tmp_path, make_tiny_model, tokenizer):
    unfused = gem_trainer(tmp_path / "a", make_tiny_model, tokenizer, fused_loss=False)
    fused = gem_trainer(tmp_path / "b", make_tiny_model, tokenizer, fused_loss=True)
    assert fused.fused_loss and not unfused.fused_loss
    batch = trl_batch(unfused)
    for trainer in (unfused, fused):
        trainer.model.zero_grad()
        trainer.compute_loss(trainer.model, dict(batch)).backward()
    assert_grads_close(grads_of(unfused.model), grads_of(fused.model), atol=1e-5)


def accumulated_grads(trainer, batch: dict, num_items_in_batch) -> list[torch.Tensor]:
    """Gradients of one optimizer step over the batch's two halves, through the Trainer's own
    training_step (which decides whether to divide by the accumulation steps)."""
    model = trainer.model
    model.zero_grad()
    trainer.current_gradient_accumulation_steps = 2
    for rows in (slice(0, 2), slice(2, 4)):
        micro = {k: v[rows] for k, v in batch.items()}
        trainer.training_step(model, micro, num_items_in_batch)
    return grads_of(model)


def test_gradient_accumulation_weighs_every_token_alike(tmp_path, make_tiny_model, tokenizer):
    trainer = gem_trainer(tmp_path, make_tiny_model, tokenizer, fused_loss=False)
    batch = trl_batch(trainer)
    tokens = [(batch["labels"][rows, 1:] != -100).sum().item() for rows in (slice(0, 2), slice(2, 4))]
    assert tokens[0] != tokens[1]  # otherwise the mean of means would equal the full mean
    model = trainer.model
    model.zero_grad()
    trainer.compute_loss(model, dict(batch)).backward()
    full = grads_of(model)

    # num_items_in_batch as the Trainer counts it: the shifted labels of every micro-batch of the step
    assert_grads_close(accumulated_grads(trainer, batch, torch.tensor(sum(tokens))), full)

    # The mean of per-micro-batch means (no num_items_in_batch) is not the full batch's gradient.
    trainer.normalise_by_items = False
    mean_of_means = accumulated_grads(trainer, batch, None)
    assert max((a - b).abs().max().item() for a, b in zip(mean_of_means, full)) > 1e-4


def test_trains_through_trl_with_accumulation(tmp_path, make_tiny_model, tokenizer):
    from gemsft.trl import GEMSFTTrainer

    model = make_tiny_model(seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = GEMSFTTrainer(model=model, args=sft_config(tmp_path, per_device_train_batch_size=2,
                                                         gradient_accumulation_steps=2, max_steps=2,
                                                         logging_steps=1),
                            train_dataset=messages_dataset(), processing_class=tokenizer, objective="gem_log_sigmoid")
    trainer.train()
    assert trainer.objective.h == "log_sigmoid" and trainer.beta == 0.7
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert logged and all(torch.isfinite(torch.tensor(e["loss"])) for e in logged)


@pytest.mark.parametrize("kwargs, message", [
    (dict(objective="ce", h="linear"), "objective 'ce' has no weighting function h"),
    (dict(objective="gem", h="tanh"), "h must be one of"),
    (dict(objective="ce_wd"), "objective 'ce_wd' trains with weight_decay=0.1"),
    (dict(objective="nope"), "unknown objective 'nope'"),
    (dict(objective="gem", beta=-1.0), "beta must be a finite number > 0"),
])
def test_bad_settings_are_one_line_errors(tmp_path, make_tiny_model, tokenizer, kwargs, message):
    from gemsft.trl import GEMSFTTrainer

    with pytest.raises(ValueError, match=re.escape(message)):
        GEMSFTTrainer(model=make_tiny_model(seed=0), args=sft_config(tmp_path), train_dataset=messages_dataset(),
                      processing_class=tokenizer, **kwargs)


def test_the_docs_example_runs(tmp_path, base_dir):
    text = (REPO / "docs/trl.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "docs/trl.md has one python example"
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 13, "the example stays short"
    # The example names the paper's model; here it runs on the tiny base saved by the fixture.
    example = re.sub(r'^model = ".*?"', f"model = {str(base_dir)!r}", example, count=1, flags=re.M)
    assert str(base_dir) in example
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                                 "PYTHONPATH": str(REPO / "workflow"), "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "gem-sft").is_dir()
