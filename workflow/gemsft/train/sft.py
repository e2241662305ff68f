"""Supervised fine-tuning of a base model with any registered objective.

Examples are rendered with the model's chat template; the loss sees assistant tokens only (the
template's `{% generation %}` mask, open-instruct's masking). One run = (model, objective, beta, seed).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, set_seed

from gemsft import files
from gemsft.chat_format import IGNORE_INDEX, build_dataset, load_tokenizer
from gemsft.objectives import Objective, get_objective
from gemsft.train.trainer import ObjectiveTrainer, run_training, training_arguments


def load_model(path: str | Path, cfg: dict):
    dtype = torch.bfloat16 if cfg.get("bf16") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
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
             metrics_path: str | Path, objective_name: str, beta: float | None, seed: int, cfg: dict) -> dict:
    objective = configured_objective(objective_name, cfg)
    set_seed(seed)
    tokenizer = load_tokenizer(base_dir, cfg.get("chat_template_from"))  # saved with the model below
    rows = files.read_jsonl(data_path)
    dataset = build_dataset(tokenizer, rows, cfg["max_length"], cfg["length_policy"], str(data_path))
    model = load_model(base_dir, cfg)
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
    return metrics
