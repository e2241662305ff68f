"""Reward model and best-of-N evaluation for the chat task (paper Section 6, Table 3, Figure 7).

The paper scores each sampled response with a reward model (sfairXC/FsfairX-LLaMA3-RM-v0.1, a
LlamaForSequenceClassification), picks the highest-reward sample of N, and reports its win rate
against a reference answer under Bradley-Terry: P(y > y') = exp(r(y)) / (exp(r(y)) + exp(r(y'))).
In the embedded world the reward model is a tiny LlamaForSequenceClassification trained here on the
world's preference pairs; the same `load_reward_model` / `score` code runs the paper's hub model.

Conversations are rendered as the chat template's user turn plus assistant turn,
`apply_chat_template([user, assistant])`. Pitfall of the official code: its reward-model input is
rendered with `add_generation_prompt=True`, so it ends with an EMPTY assistant header after the
response and the reward is read at that header's last token instead of at the end of the response;
and with a detokenizer it first round-trips the prompt and the response through the tokenizer
(`gemsft.chat_format.paper_code_round_trip`). The default does neither; `compat: paper_code` does both
(`render`, docs/compat.md).

Best-of-N is computed in closed form from the n sampled rewards of a prompt: the expectation over all
size-N subsets (uniform) of a function of the subset's maximum, using order-statistic weights
P(max is the i-th smallest) = C(i-1, N-1) / C(n, N). The official code takes the first N samples
instead (`first_n_*`, the `compat: paper_code` variant), which is an unbiased but noisier estimate.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup, set_seed

from gemsft import files
from gemsft.config import PAPER_CODE
from gemsft.chat_format import (assistant_turn, load_tokenizer, paper_code_prompt, paper_code_round_trip,
                                render_ids, user_turn)
from gemsft.model_loading import load_sequence_classifier, loading_settings

PREFERENCE_FIELDS = ("id", "prompt", "chosen", "rejected")
# Measured on the embedded world (tests/test_reward.py): 2 epochs of 32 pairs at 1e-3 match 3 epochs of
# 16 at 1e-4 in held-out pair accuracy (0.58-0.66 over seeds) at two thirds of the cost.
DEFAULTS = {"epochs": 2, "batch_size": 32, "learning_rate": 1e-3, "seed": 1234, "heldout_fraction": 0.1,
            "max_length": 512, "max_steps": None, "head_learning_rate": None, "families": None,
            "weight_decay": 0.0, "warmup_ratio": 0.03, "max_grad_norm": 1.0}


# --------------------------------------------------------------------------- rendering and pooling

def _load_tokenizer(path: str | Path):
    # The chat format's loader (chat template required, pad falls back to EOS): safe here because
    # pooling uses the attention mask, not `input_ids != pad_token_id`.
    tokenizer = load_tokenizer(path)
    tokenizer.padding_side = "right"
    return tokenizer


def render(tokenizer, prompt: str, response: str, max_length: int | None = None, compat: str | None = None,
           detokenizer=None) -> list[int]:
    """Token ids of the conversation (user prompt, assistant response) as the chat template renders it,
    without a trailing generation prompt. A conversation longer than `max_length` keeps its LAST
    `max_length` tokens: the reward is read at the final token, so the end of the response must stay.

    `compat` "paper_code": the official reward script's input (`evaluation_reward.py`, `main`). With a
    `detokenizer` (the generating model's tokenizer, as its `--detokenizer_path`), the prompt is
    recovered from its templated form (`paper_code_prompt`) and the response round-tripped
    (`paper_code_round_trip`); then the template renders the two turns WITH the generation prompt,
    so the ids end with an empty assistant header. The official script does not truncate; the same
    left truncation applies here."""
    if compat == PAPER_CODE:
        if detokenizer is not None:
            prompt, response = paper_code_prompt(detokenizer, prompt), paper_code_round_trip(detokenizer, response)
        ids = render_ids(tokenizer, [user_turn(prompt), assistant_turn(response)], add_generation_prompt=True)
    elif compat is None:
        ids = render_ids(tokenizer, [user_turn(prompt), assistant_turn(response)])
    else:
        raise ValueError(f"render: unknown compat {compat!r}; use None or 'paper_code'")
    if max_length is not None and len(ids) > max_length:
        ids = ids[-max_length:]
    return ids


def _max_length(model, tokenizer, max_length: int | None) -> int:
    limits = [n for n in (max_length, getattr(model.config, "max_position_embeddings", None),
                          tokenizer.model_max_length) if n]
    return int(min(limits))


def _pad(sequences: Sequence[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def _rewards(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scalar reward at each right-padded sequence's last real token (from the attention mask).

    LlamaForSequenceClassification's own pooling takes the rightmost token != pad_token_id, which is
    wrong when pad == eos and a conversation ends with eos; pooling by the attention mask is exact for
    any pad token. Models without a separate backbone + `score` head fall back to their own pooling.
    """
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    head = getattr(model, "score", None)
    if backbone is None or head is None:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    last = attention_mask.sum(dim=1) - 1
    pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return head(pooled)[:, 0]


# --------------------------------------------------------------------------- loading and scoring

def load_reward_model(path: str | Path, loading: dict | None = None):
    """(model, tokenizer) of a reward model (a directory or hub id): an AutoModelForSequenceClassification
    with one output, on the stage's device in the `loading` settings' dtype (gemsft.model_loading;
    the paper's FsfairX-8B in bf16 on a GPU).

    A checkpoint without a trained reward head (e.g. a causal LM: transformers would silently
    initialise `score` at random) is an error, as is a head with more than one output.
    """
    model, info = load_sequence_classifier(path, loading, output_loading_info=True)
    prefix = getattr(model, "base_model_prefix", "")
    head_missing = sorted(k for k in info.get("missing_keys", ())
                          if k.endswith("score.weight") or (prefix and not k.startswith(prefix + ".")))
    if head_missing:
        arch = ", ".join(getattr(model.config, "architectures", None) or ["unknown architecture"])
        raise ValueError(f"{path} has no reward head (score weights missing: {', '.join(head_missing)}); "
                         f"the checkpoint is a {arch}, not a trained sequence-classification reward model")
    if model.config.num_labels != 1:
        raise ValueError(f"{path}: a reward model needs a single output, this one has num_labels="
                         f"{model.config.num_labels}")
    tokenizer = _load_tokenizer(path)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


@torch.no_grad()
def score(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 64,
          max_length: int | None = None, progress: bool = True, compat: str | None = None,
          detokenizer=None) -> np.ndarray:
    """Reward of each (prompt, response) pair, float64 array of shape (len(prompts),).

    Batches are formed from length-sorted conversations (less padding) and right-padded; the
    result does not depend on batch size or padding (causal attention + mask-based pooling).
    `max_length` defaults to the model's context; longer conversations keep their last tokens.
    `compat` and `detokenizer`: the conversation's rendering (`render`).
    """
    if len(prompts) != len(responses):
        raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
    if batch_size < 1:
        raise ValueError(f"score: batch_size must be >= 1, got {batch_size}")
    limit = _max_length(model, tokenizer, max_length)
    encoded = [render(tokenizer, p, r, limit, compat, detokenizer) for p, r in zip(prompts, responses)]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.empty(len(encoded), dtype=np.float64)
    try:
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="reward", unit="batch", disable=not progress or len(starts) < 2):
            index = order[start: start + batch_size]
            ids, mask = _pad([encoded[i] for i in index], tokenizer.pad_token_id, device)
            out[index] = _rewards(model, ids, mask).float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------- training

def validate_preferences(rows: list[dict], source: str = "preferences") -> None:
    """Every row has an id (string or integer) and non-empty string prompt/chosen/rejected; errors name
    the row (0-based, blank lines skipped) and the field."""
    if not rows:
        raise ValueError(f"{source}: the preference file is empty")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{source}: row {index} is not an object")
        for field in PREFERENCE_FIELDS:
            value = row.get(field)
            valid = (isinstance(value, (str, int)) and not isinstance(value, bool) if field == "id"
                     else isinstance(value, str) and value != "")
            if not valid:
                expected = "a string or integer" if field == "id" else "a non-empty string"
                raise ValueError(f"{source}: row {index} lacks field '{field}' (missing or not {expected}: {value!r})")


def split_by_prompt(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, heldout) rows; whole prompts (all rows of an `id`) are held out, `fraction` of the ids of
    each family (rounded, at least one when the family has two or more ids), chosen by `seed`."""
    if not 0 <= fraction < 1:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {fraction}")
    by_family: dict[str, dict] = {}
    for row in rows:
        by_family.setdefault(str(row.get("family", "")), {})[row["id"]] = None  # ordered set of ids
    rng = random.Random(seed)
    heldout = set()
    for family in sorted(by_family):
        ids = list(by_family[family])
        k = round(fraction * len(ids))
        if fraction > 0 and len(ids) >= 2:
            k = min(max(k, 1), len(ids) - 1)
        heldout.update(rng.sample(ids, k))
    return [r for r in rows if r["id"] not in heldout], [r for r in rows if r["id"] in heldout]


def _pair_rewards(model, tokenizer, rows: list[dict], max_length: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(r_chosen, r_rejected) of preference rows, through `score` (length-sorted batches)."""
    if not rows:
        return np.empty(0), np.empty(0)
    prompts = [r["prompt"] for r in rows]
    rewards = score(model, tokenizer, prompts + prompts, [r["chosen"] for r in rows] + [r["rejected"] for r in rows],
                    batch_size=batch_size, max_length=max_length, progress=False)
    return rewards[: len(rows)], rewards[len(rows):]


def _pair_metrics(rows: list[dict], chosen: np.ndarray, rejected: np.ndarray, per_prompt: bool = False) -> dict:
    """Pair accuracy overall, per family and per criterion (what a world chat pair's label is about:
    acceptability or quality); with `per_prompt`, each prompt's pairs and correct pairs too (the
    chat-quality stage reports the held-out accuracy with an interval over prompts)."""
    if not rows:
        return {"accuracy": None, "loss": None, "pairs": 0, "prompts": 0, "per_family_accuracy": {},
                "per_criterion_accuracy": {}, **({"per_prompt": []} if per_prompt else {})}
    margin = chosen - rejected
    families: dict[str, list[bool]] = {}
    criteria: dict[str, list[bool]] = {}
    prompts: dict = {}
    for row, m in zip(rows, margin):
        families.setdefault(str(row.get("family", "")), []).append(bool(m > 0))
        if "criterion" in row:
            criteria.setdefault(str(row["criterion"]), []).append(bool(m > 0))
        entry = prompts.setdefault(row["id"], {"id": row["id"], "family": str(row.get("family", "")),
                                               "pairs": 0, "correct": 0})
        entry["pairs"] += 1
        entry["correct"] += int(m > 0)
    result = {"accuracy": float(np.mean(margin > 0)), "loss": float(np.mean(np.logaddexp(0.0, -margin))),
              "mean_margin": float(np.mean(margin)), "pairs": len(rows), "prompts": len(prompts),
              "per_family_accuracy": {f: float(np.mean(v)) for f, v in sorted(families.items())},
              "per_criterion_accuracy": {c: float(np.mean(v)) for c, v in sorted(criteria.items())}}
    if per_prompt:
        result["per_prompt"] = list(prompts.values())
    return result


def train_reward_model(base_dir: str | Path, preferences_path: str | Path, out_dir: str | Path,
                       metrics_path: str | Path, cfg: dict) -> dict:
    """Train a Bradley-Terry reward model on preference pairs and save it (model + tokenizer).

    `base_dir` is loaded as AutoModelForSequenceClassification(num_labels=1) (for a Llama base:
    LlamaForSequenceClassification with a fresh `score` head). Each row {"id", "prompt", "chosen",
    "rejected"[, "family"]} is rendered as the chat template's user turn + assistant turn, i.e.
    `apply_chat_template([user, assistant])`, NOT the official code's rendering with
    `add_generation_prompt=True`, which appends an empty assistant header after the response. The
    loss is -log sigmoid(r_chosen - r_rejected), averaged over a batch of pairs; AdamW with cosine
    decay and warm-up, grad-norm clipping, seeded shuffling. A `heldout_fraction` of the prompts
    (grouped by `id`, per family, seeded) is held out; the metrics report the held-out and train pair
    accuracy (fraction with r_chosen > r_rejected) after training, per family and per criterion (a
    world chat pair's "acceptability" or "quality"), and for the held-out set per prompt.

    cfg: epochs (may be fractional), batch_size (pairs per step), learning_rate, seed, heldout_fraction (0.1),
    max_length (conversations longer keep their last tokens); optional max_steps (stop early),
    head_learning_rate (the `score` head's, default learning_rate), families (train on these only),
    weight_decay, warmup_ratio, max_grad_norm. See DEFAULTS.
    """
    cfg = {**DEFAULTS, **cfg}
    seed = int(cfg["seed"])
    rows = files.read_jsonl(preferences_path)
    validate_preferences(rows, str(preferences_path))
    if cfg.get("families"):
        wanted = set(cfg["families"])
        rows = [r for r in rows if r.get("family") in wanted]
        if not rows:
            raise ValueError(f"{preferences_path}: no preference rows of families {sorted(wanted)}")
    train_rows, heldout_rows = split_by_prompt(rows, float(cfg["heldout_fraction"]), seed)
    if not train_rows:
        raise ValueError(f"{preferences_path}: no training pairs left after holding out prompts")

    set_seed(seed)
    tokenizer = _load_tokenizer(base_dir)
    # Trained in float32 whatever reward_model.dtype says (bf16 weights would not take AdamW's small
    # updates), on the stage's device, with the section's attention implementation.
    model = load_sequence_classifier(base_dir, loading_settings(cfg), num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    limit = _max_length(model, tokenizer, cfg["max_length"])

    def encode(subset):
        return [(render(tokenizer, r["prompt"], r["chosen"], limit), render(tokenizer, r["prompt"], r["rejected"], limit))
                for r in subset]

    train_pairs, heldout_pairs = encode(train_rows), encode(heldout_rows)
    truncated = sum(len(c) == limit or len(r) == limit for c, r in train_pairs + heldout_pairs)

    batch_size = int(cfg["batch_size"])
    steps_per_epoch = math.ceil(len(train_pairs) / batch_size)
    if float(cfg["epochs"]) <= 0:
        raise ValueError(f"reward model epochs must be > 0, got {cfg['epochs']}")
    total_steps = max(1, math.ceil(steps_per_epoch * float(cfg["epochs"])))  # fractional epochs allowed
    if cfg.get("max_steps"):
        total_steps = min(total_steps, int(cfg["max_steps"]))
    head = getattr(model, "score", None)
    head_params = list(head.parameters()) if head is not None else []
    head_ids = {id(p) for p in head_params}
    groups = [{"params": [p for p in model.parameters() if id(p) not in head_ids], "lr": float(cfg["learning_rate"])}]
    if head_params:
        groups.append({"params": head_params, "lr": float(cfg["head_learning_rate"] or cfg["learning_rate"])})
    optimizer = torch.optim.AdamW(groups, weight_decay=float(cfg["weight_decay"]))
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(float(cfg["warmup_ratio"]) * total_steps),
                                                max(total_steps, 1))
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    history = []
    start_time = time.perf_counter()
    model.train()
    step = 0
    with tqdm(total=total_steps, desc="reward model", unit="step") as bar:
        for epoch in range(math.ceil(total_steps / steps_per_epoch)):
            order = torch.randperm(len(train_pairs), generator=generator).tolist()
            losses = []
            for start in range(0, len(order), batch_size):
                if step == total_steps:
                    break
                step += 1
                batch = [train_pairs[i] for i in order[start: start + batch_size]]
                ids, mask = _pad([c for c, _ in batch] + [r for _, r in batch], tokenizer.pad_token_id, device)
                rewards = _rewards(model, ids, mask)
                loss = -F.logsigmoid(rewards[: len(batch)] - rewards[len(batch):]).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg["max_grad_norm"]:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["max_grad_norm"]))
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
            history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses))})
    train_seconds = time.perf_counter() - start_time

    eval_batch = max(2 * batch_size, 64)
    train_eval = _pair_metrics(train_rows, *_pair_rewards(model, tokenizer, train_rows, limit, eval_batch))
    heldout_eval = _pair_metrics(heldout_rows, *_pair_rewards(model, tokenizer, heldout_rows, limit, eval_batch),
                                 per_prompt=True)
    metrics = {
        "heldout_accuracy": heldout_eval["accuracy"],
        "train_accuracy": train_eval["accuracy"],
        "heldout": heldout_eval,
        "train": train_eval,
        "history": history,
        "steps": total_steps,
        "train_seconds": round(train_seconds, 3),
        "truncated_pairs": truncated,
        "heldout_ids": sorted({r["id"] for r in heldout_rows}, key=str),
        "config": {k: cfg[k] for k in sorted(cfg)},
    }
    model.eval()
    with files.atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    files.write_json(metrics_path, metrics)
    return metrics


# --------------------------------------------------------------------------- best-of-N, closed form


