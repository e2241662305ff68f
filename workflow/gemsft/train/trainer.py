"""The HF Trainer with an objective plugged in by name, shared by pretraining and SFT.

The loss is the objective's token-level mean over the micro-batch's unmasked tokens (the
transformers 4.45 behaviour the paper trained with); the Trainer divides it by the number of
gradient-accumulation steps. Besides the objective's loss it logs CE and the mean next-token entropy
of the model on the same tokens, so runs of different objectives compare on one scale. The loss is
looked up once, when the trainer is built (:func:`gemsft.losses.bind_loss`).

With the fused loss (``fused_loss``, `train.fused_loss` in the config; ``auto``, the default, fuses
where it was measured not slower: :mod:`gemsft.train.fused_choice`) the (N, V) logits are never
materialised: the model runs without its LM head (its decoder's last hidden state is taken), and the
loss, its gradients and the logged CE and entropy come from the kind's fused function
(:mod:`gemsft.losses.fused`) on the shifted hidden states and the head's weight, chunk by chunk, in
the precision the head would have had (under mixed precision, the accelerator's autocast). Models
whose head is not a plain bias-free ``nn.Linear`` applied as is (logit scaling or soft-capping, a
PEFT-wrapped head, weights sharded by ZeRO-3 or FSDP) and kinds without a fused function
(``ce_entropy``, ``ts2``, ``asft``) fall back to the unfused path. The choice and its
reason go into the run's metrics.

A kind that anchors the model to where it started (``asft``: registered with ``reference=True``) gets
the logits of a frozen reference: a copy of the model the trainer is built with (the SFT start point,
before any checkpoint is resumed into it), in eval mode with no parameter requiring gradient, run on
each batch under ``torch.no_grad()``. It costs one more copy of the weights on each device and one
more forward pass per batch; ZeRO-3 and FSDP (sharded weights) are not supported for it.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from gemsft.losses import bind_loss, ce_loss, shift_for_causal_lm, token_entropy
from gemsft.objectives import Objective
from gemsft.train.fused_choice import choose_fused_loss

# Causal LMs whose logits are exactly `lm_head(last_hidden_state)` (checked against transformers'
# modeling code: no logit scaling or soft-capping) and whose forward takes `logits_to_keep`.
FUSABLE_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "olmo2"})


class ObjectiveLossMixin:
    """The loss of `objective` (at `beta`, if it uses one) on the shifted logits, for a subclass of the
    HF Trainer: :class:`ObjectiveTrainer` here, and :class:`gemsft.trl.GEMSFTTrainer` for TRL's
    SFTTrainer. Put it first among the bases.

    Each micro-batch's loss is the objective's mean over its unmasked tokens. With
    ``normalise_by_items`` and the Trainer's `num_items_in_batch` (the unmasked tokens of every
    micro-batch of the optimizer step), it is rescaled to their sum over that count, so that gradient
    accumulation weighs every token alike (TRL's and current transformers' convention; with a plain
    mean per micro-batch, a short micro-batch's tokens would weigh more)."""

    normalise_by_items = False

    def __init__(self, *args, objective: Objective, beta: float | None = None,
                 fused_loss: bool | str | None = None, **kwargs):
        self.bound_loss = bind_loss(objective, beta)  # first: a bad beta fails before any setup
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.beta = self.bound_loss.beta
        # true, false or "auto" (None): see gemsft.train.fused_choice
        choice = choose_fused_loss(fused_loss, self.args.device.type, objective.loss,
                                   self.bound_loss.fused is not None)
        if choice.value and self._separable_head(self.model) is None:
            choice = dataclasses.replace(choice, value=False, reason="the model's LM head cannot be fused "
                                         "(not a plain linear head of a supported model, or sharded)")
        self.fused_choice = choice
        self.fused_loss = choice.value
        self.reference_model = self._frozen_reference(self.model) if self.bound_loss.reference else None
        self._tracked: dict[str, list[float]] = {"ce": [], "entropy": [], "objective_loss": []}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        if self.fused_loss and not return_outputs and self.bound_loss.fused is not None:
            head = self._separable_head(model)
            if head is not None:
                loss = self._fused_loss(model, inputs, labels, *head)
                return self._scaled_for_accumulation(loss, labels, num_items_in_batch)
        outputs = model(**inputs)
        logits, targets = shift_for_causal_lm(outputs.logits, labels)
        if self.reference_model is not None:
            ref_logits, _ = shift_for_causal_lm(self._reference_logits(inputs), labels)
            loss = self.bound_loss.logits(logits, targets, ref_logits)
        else:
            loss = self.bound_loss.logits(logits, targets)
        if model.training:
            with torch.no_grad():
                self._tracked["ce"].append(ce_loss(logits, targets).item())
                self._tracked["entropy"].append(token_entropy(logits, targets).item())
                self._tracked["objective_loss"].append(loss.item())
        loss = self._scaled_for_accumulation(loss, labels, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def _scaled_for_accumulation(self, loss: torch.Tensor, labels: torch.Tensor, num_items_in_batch) -> torch.Tensor:
        """The micro-batch's token mean as its share of the step's token sum (``normalise_by_items``)."""
        if not self.normalise_by_items or num_items_in_batch is None:
            return loss
        tokens = (labels[..., 1:] != -100).sum()
        loss = loss * tokens / torch.as_tensor(num_items_in_batch, device=loss.device).clamp(min=1)
        if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            # num_items_in_batch counts every rank's tokens, and DDP averages the ranks' gradients
            loss = loss * self.accelerator.num_processes
        return loss

    def _frozen_reference(self, model) -> torch.nn.Module:
        """A frozen copy of `model` as it is now (the SFT start point), on the training device."""
        from transformers.integrations import is_deepspeed_zero3_enabled

        if is_deepspeed_zero3_enabled() or self.is_fsdp_enabled:
            raise ValueError(f"objective {self.objective.name!r} needs a frozen copy of the base model, which is not "
                             "supported with DeepSpeed ZeRO-3 or FSDP (sharded weights): use ZeRO-2 or one device")
        reference = copy.deepcopy(self.accelerator.unwrap_model(model))
        reference.requires_grad_(False)
        return reference.eval().to(self.args.device)

    @torch.no_grad()
    def _reference_logits(self, inputs: dict) -> torch.Tensor:
        """The frozen reference model's logits on the batch (labels already taken out), no gradient;
        under the Trainer's mixed-precision autocast, as the trained model's forward runs."""
        with self.accelerator.autocast():
            return self.reference_model(**{**inputs, "use_cache": False}).logits

    def _separable_head(self, model) -> tuple[torch.nn.Module, torch.nn.Parameter] | None:
        """(decoder, head weight) when `model`'s logits are `decoder(...).last_hidden_state @ weight.T`."""
        from transformers.integrations import is_deepspeed_zero3_enabled

        if is_deepspeed_zero3_enabled() or self.is_fsdp_enabled:
            return None  # the head's weight is sharded outside the model's forward
        base = self.accelerator.unwrap_model(model)  # DDP / DeepSpeed engine -> the model
        if hasattr(base, "get_base_model"):  # PEFT
            base = base.get_base_model()
        if getattr(getattr(base, "config", None), "model_type", None) not in FUSABLE_MODEL_TYPES:
            return None
        head = base.get_output_embeddings()
        if type(head) is not torch.nn.Linear or head.bias is not None or head.weight.dim() != 2:
            return None  # e.g. a LoRA- or modules_to_save-wrapped head
        decoder = base.get_decoder()
        if decoder is None or decoder is base or "logits_to_keep" not in inspect.signature(base.forward).parameters:
            return None
        return decoder, head.weight

    def _fused_loss(self, model, inputs, labels, decoder, weight):
        """The objective on the shifted last hidden states and the head weight, logits never built.

        The full model runs (through any DDP/DeepSpeed/PEFT wrapper, with NEFTune's embedding hook)
        with `logits_to_keep` = no position, so the head computes nothing; a forward hook on the
        decoder takes its last hidden state, the one the head would have been applied to.
        """
        captured = []

        def keep_hidden(module, args, output):
            captured.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

        handle = decoder.register_forward_hook(keep_hidden)
        try:
            model(**inputs, logits_to_keep=torch.empty(0, dtype=torch.long, device=labels.device))
        finally:
            handle.remove()
        hidden, targets = shift_for_causal_lm(captured[-1], labels)
        track = model.training
        # Mixed precision autocasts inside model.forward only; the head runs here, after it, and
        # without this its matmuls would run on the float32 master weight (SIMT kernels on a GPU).
        with self.accelerator.autocast():
            out = self.bound_loss.fused(hidden, weight, targets, return_stats=track)
        loss, stats = out if track else (out, None)
        if track:
            self._tracked["ce"].append(stats.ce.item())
            self._tracked["entropy"].append(stats.entropy.item())
            self._tracked["objective_loss"].append(loss.item())
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            for name, values in self._tracked.items():
                if values:
                    logs[name] = sum(values) / len(values)
                    values.clear()
        super().log(logs, start_time)


class ObjectiveTrainer(ObjectiveLossMixin, Trainer):
    """The pipeline's Trainer: `objective`'s loss, a plain mean per micro-batch (the transformers 4.45
    behaviour the paper trained with), which the Trainer divides by the accumulation steps."""

    loss_is_scaled_for_ga = False


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
        # False on a GPU node with the CUDA stack (make env-gpu); the CPU stack's torch (make env) sees no GPU.
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,  # every parameter gets a gradient (gemsft.train.launch's DDP runs)
        dataloader_num_workers=0,
        report_to=[],
        disable_tqdm=False,
        remove_unused_columns=False,
    )


CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_COMPLETE = "trainer_state.json"  # the Trainer writes it last, after weights, optimizer and RNG states


def last_complete_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest checkpoint in `checkpoint_dir` that the Trainer finished writing.

    The Trainer writes `checkpoint-N/` file by file, so a run killed while saving leaves a partial
    one behind; resuming from it would fail. A checkpoint counts once its trainer_state.json parses."""
    import json

    root = Path(checkpoint_dir)
    if not root.is_dir():
        return None
    steps = sorted((int(d.name[len(CHECKPOINT_PREFIX):]), d) for d in root.iterdir()
                   if d.is_dir() and d.name.startswith(CHECKPOINT_PREFIX) and d.name[len(CHECKPOINT_PREFIX):].isdigit())
    for _, path in reversed(steps):
        try:
            json.loads((path / CHECKPOINT_COMPLETE).read_text())
        except (OSError, ValueError):
            continue  # partial: an older complete one, or a fresh start
        return path
    return None


def run_training(trainer: ObjectiveTrainer, checkpoint_dir: str | Path) -> dict:
    """Train, resuming from the newest complete checkpoint in `checkpoint_dir` if one exists; return
    metrics. A failure after resuming is a one-line error naming the checkpoint."""
    last = last_complete_checkpoint(checkpoint_dir)
    start = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(last) if last else None)
    except Exception as err:
        if last is None:
            raise
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise RuntimeError(f"training resumed from {last} failed ({type(err).__name__}: {first_line}); if that "
                           "checkpoint is corrupted, delete it to restart from an earlier one or from scratch") from err
    seconds = time.perf_counter() - start
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    final = history[-1] if history else {}
    return {
        "objective": trainer.objective.name,
        "beta": trainer.beta,
        "fused_loss": dataclasses.asdict(trainer.fused_choice),
        "resumed_from": Path(last).name if last else None,
        "global_steps": trainer.state.global_step,
        "train_seconds": seconds,
        "train_loss": result.training_loss,
        "final": {k: final.get(k) for k in ("loss", "ce", "entropy", "grad_norm") if k in final},
        "log_history": trainer.state.log_history,
        "finite": all(math.isfinite(e.get("loss", 0.0)) for e in history),
    }
