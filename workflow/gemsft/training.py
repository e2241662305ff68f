"""The HF Trainer with an objective plugged in by name, shared by pretraining and SFT.

The loss is the objective's token-level mean over the micro-batch's unmasked tokens (the
transformers 4.45 behaviour the paper trained with); the Trainer divides it by the number of
gradient-accumulation steps. Besides the objective's loss it logs CE and the mean next-token entropy
of the model on the same tokens, so runs of different objectives compare on one scale.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .losses import Objective, ce_loss, shift_for_causal_lm, token_entropy


class ObjectiveTrainer(Trainer):
    """A Trainer whose loss is `objective` on the shifted logits."""

    loss_is_scaled_for_ga = False  # per-micro-batch mean: the Trainer divides by accumulation steps

    def __init__(self, *args, objective: Objective, beta: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.beta = beta
        self._tracked: dict[str, list[float]] = {"ce": [], "entropy": [], "objective_loss": []}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits, targets = shift_for_causal_lm(outputs.logits, labels)
        loss = self.objective.compute(logits, targets, beta=self.beta)
        if model.training:
            with torch.no_grad():
                self._tracked["ce"].append(ce_loss(logits, targets).item())
                self._tracked["entropy"].append(token_entropy(logits, targets).item())
                self._tracked["objective_loss"].append(loss.item())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            for name, values in self._tracked.items():
                if values:
                    logs[name] = sum(values) / len(values)
                    values.clear()
        super().log(logs, start_time)


def training_arguments(cfg: dict, output_dir: str | Path, seed: int, weight_decay: float = 0.0,
                       neftune_noise_alpha: float | None = None) -> TrainingArguments:
    """TrainingArguments from a `pretrain`/`train` config section (the paper's schedule by default)."""
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg["epochs"],
        max_steps=cfg.get("max_steps") or -1,
        per_device_train_batch_size=cfg["per_device_batch_size"],
        gradient_accumulation_steps=cfg.get("gradient_accumulation_steps", 1),
        learning_rate=cfg["learning_rate"],
        lr_scheduler_type=cfg.get("lr_scheduler", "cosine"),
        warmup_steps=cfg.get("warmup_ratio", 0.03),  # a float below 1 is a ratio of the total steps
        adam_beta2=cfg.get("adam_beta2", 0.95),
        max_grad_norm=cfg.get("max_grad_norm", 1.0),
        weight_decay=weight_decay,
        neftune_noise_alpha=neftune_noise_alpha,
        bf16=cfg.get("bf16", False),
        gradient_checkpointing=cfg.get("gradient_checkpointing", False),
        deepspeed=cfg.get("deepspeed") or None,
        logging_steps=cfg.get("logging_steps", 10),
        save_strategy="steps",
        save_steps=cfg.get("save_steps", 100),
        save_total_limit=cfg.get("save_total_limit", 1),
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        report_to=[],
        disable_tqdm=False,
        remove_unused_columns=False,
    )


def run_training(trainer: ObjectiveTrainer, checkpoint_dir: str | Path) -> dict:
    """Train, resuming from the newest checkpoint in `checkpoint_dir` if one exists; return metrics."""
    last = get_last_checkpoint(str(checkpoint_dir)) if Path(checkpoint_dir).is_dir() else None
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - start
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    final = history[-1] if history else {}
    return {
        "objective": trainer.objective.name,
        "beta": trainer.beta,
        "resumed_from": Path(last).name if last else None,
        "global_steps": trainer.state.global_step,
        "train_seconds": seconds,
        "train_loss": result.training_loss,
        "final": {k: final.get(k) for k in ("loss", "ce", "entropy", "grad_norm") if k in final},
        "log_history": trainer.state.log_history,
        "finite": all(math.isfinite(e.get("loss", 0.0)) for e in history),
    }
