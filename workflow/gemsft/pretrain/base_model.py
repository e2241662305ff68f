"""Pretrain the embedded world's base model: a BPE tokenizer and a tiny Llama trained from scratch
with cross-entropy on the world's corpus, saved with `save_pretrained` like a hub model."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import default_data_collator, set_seed

from gemsft import files
from gemsft.objectives import get_objective
from gemsft.pretrain.model import count_parameters, tiny_llama
from gemsft.pretrain.tokenizer import encode_document, train_tokenizer
from gemsft.train.trainer import ObjectiveTrainer, run_training, training_arguments


class PackedBlocks(torch.utils.data.Dataset):
    """Documents (BOS text EOS) concatenated and cut into equal blocks, as in GPT pretraining."""

    def __init__(self, token_ids: list[int], block_size: int):
        n_blocks = len(token_ids) // block_size
        if n_blocks == 0:
            raise ValueError(f"pretraining corpus has {len(token_ids)} tokens, fewer than one block ({block_size})")
        self.blocks = torch.tensor(token_ids[: n_blocks * block_size]).view(n_blocks, block_size)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def pretrain(corpus_path: str | Path, out_dir: str | Path, checkpoint_dir: str | Path, model_cfg: dict,
             cfg: dict, metrics_path: str | Path) -> dict:
    threads = cfg.get("threads")
    if threads:
        # Float sums split over another number of threads come out in another order, and 20 epochs
        # of them make another pre-trained model: pinning the count makes the model independent of
        # the cores a run is given (docs/calibration.md).
        torch.set_num_threads(int(threads))
    set_seed(cfg["seed"])
    texts = [row["text"] for row in files.read_jsonl(corpus_path)]
    if not texts:
        raise ValueError(f"{corpus_path}: the pretraining corpus is empty")
    tokenizer = train_tokenizer(texts, model_cfg["vocab_size"])
    token_ids = [i for text in texts for i in encode_document(tokenizer, text)]
    dataset = PackedBlocks(token_ids, cfg["block_size"])
    model = tiny_llama(model_cfg, tokenizer)

    trainer = ObjectiveTrainer(
        model=model,
        args=training_arguments(cfg, checkpoint_dir, seed=cfg["seed"], weight_decay=cfg.get("weight_decay", 0.0)),
        train_dataset=dataset,
        data_collator=default_data_collator,
        objective=get_objective("ce"),
    )
    if threads:
        # Again: accelerate sets its own count when building the trainer in a distributed CPU
        # environment without OMP_NUM_THREADS.
        torch.set_num_threads(int(threads))
    metrics = run_training(trainer, checkpoint_dir)
    metrics.update(parameters=count_parameters(model), corpus_tokens=len(token_ids), threads=torch.get_num_threads(),
                   tokens_per_second=trainer.state.global_step * cfg["per_device_batch_size"]
                   * cfg.get("gradient_accumulation_steps", 1)
                   * cfg["block_size"] / metrics["train_seconds"])

    with files.atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    files.write_json(metrics_path, metrics)
    return metrics
