"""Supervised fine-tuning of a base model with any registered objective.

Examples are rendered with the model's chat template; the loss sees assistant tokens only (the
template's `{% generation %}` mask, open-instruct's masking). One run = (model, objective, beta, seed).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch
from transformers import DataCollatorForSeq2Seq, set_seed

from gemsft import files
from gemsft.chat_format import IGNORE_INDEX, build_dataset, load_tokenizer
from gemsft.model_loading import load_causal_lm
from gemsft.objectives import Objective, get_objective
from gemsft.train.trainer import ObjectiveTrainer, run_training, training_arguments


def load_model(path: str | Path, cfg: dict, loading: dict | None = None):
    """The base model (a directory or hub id) to fine-tune, with the model's `loading` settings'
    attention implementation. Its dtype is train.bf16's, not the settings': the weights being
    trained are kept in bf16 or float32 as the paper's setup says, and the Trainer places the model
    (one device per process, or DeepSpeed's partitioning), so it is not moved here."""
    dtype = torch.bfloat16 if cfg.get("bf16") else torch.float32
    model = load_causal_lm(path, loading, device=None, dtype=dtype)
    lora = cfg.get("lora") or {}
    if lora.get("enabled"):
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora.get("dropout", 0.0),
            target_modules=lora.get("target_modules", "all-linear"), task_type="CAUSAL_LM"))
    return model


def configured_objective(name: str, cfg: dict) -> Objective:
    """The registry's objective with the config's overrides (`train.objective_overrides.<name>`) applied."""
    objective = get_objective(name)
    overrides = (cfg.get("objective_overrides") or {}).get(name) or {}
    return dataclasses.replace(objective, **overrides)


def finetune(base_dir: str | Path, data_path: str | Path, out_dir: str | Path, checkpoint_dir: str | Path,
             metrics_path: str | Path, objective_name: str, beta: float | None, seed: int, cfg: dict,
             loading: dict | None = None) -> dict:
    objective = configured_objective(objective_name, cfg)
    set_seed(seed)
    tokenizer = load_tokenizer(base_dir, cfg.get("chat_template_from"))  # saved with the model below
    rows = files.read_jsonl(data_path)
    dataset = build_dataset(tokenizer, rows, cfg["max_length"], cfg["length_policy"], str(data_path))
    model = load_model(base_dir, cfg, loading)
    trainer = ObjectiveTrainer(
        model=model,
        args=training_arguments(cfg, checkpoint_dir, seed=seed, weight_decay=objective.weight_decay,
                                neftune_noise_alpha=objective.neftune_noise_alpha),
        train_dataset=dataset,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
        objective=objective,
        beta=beta,  # the run's, None for objectives without one; checked by the trainer's loss lookup
        fused_loss=cfg.get("fused_loss"),
    )
    metrics = run_training(trainer, checkpoint_dir)
    # rows - examples: conversations dropped by the length policy (or truncated to no assistant token)
    metrics.update(seed=seed, rows=len(rows), examples=len(dataset), weight_decay=objective.weight_decay,
                   supervised_tokens=sum(sum(l != IGNORE_INDEX for l in ex["labels"]) for ex in dataset))

    if not trainer.is_world_process_zero():  # a distributed run (gemsft.train.launch): rank 0 writes the outputs
        return metrics
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()  # later stages load a plain model, as from the hub
    with files.atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    files.write_json(metrics_path, metrics)
    # train.keep_checkpoints: the config schema fills in false; a cfg without the key (a direct call) keeps them.
    if not cfg.get("keep_checkpoints", True):
        # Last, once both outputs exist: a run stopped before here still resumes from its checkpoints.
        # A finished run needs none. Snakemake reruns it only from scratch (e.g. after a config change),
        # and a leftover checkpoint would then resume the old run. An 8B ZeRO-2 checkpoint holds over
        # 100 GB (bf16 weights, plus fp32 weights and Adam's two moments: at least 14 bytes a parameter).
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return metrics
