"""Model statistics of Section 6 / Figure 9: response entropy and perplexity on the SFT test split,
and the l2 distance of a fine-tuned model from its pre-trained base.

Entropy is the paper's "mean conditional next-token entropy over the response tokens": at every
assistant token t of a test conversation (teacher forcing on the reference response), the exact
entropy H(softmax(z_{t-1})) over the whole vocabulary of the model's next-token distribution, averaged
over all response tokens of all conversations (a token-level mean: long responses weigh more).
`entropy_mean_of_sequences` is the alternative mean of per-conversation means, reported alongside.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from gemsft import files
from gemsft.losses import shift_for_causal_lm
from gemsft.model_loading import CHECKPOINT_DTYPE, load_causal_lm
from gemsft.chat_format import (IGNORE_INDEX, encode_rendered, has_assistant_message, load_tokenizer, prompt_text,
                                 tokenize_example, truncate_example)

_ROWS_PER_CHUNK = 512  # bounds the (rows x vocab) float32 temporaries for large vocabularies


# --------------------------------------------------------------------------- entropy and perplexity


def _encode(tokenizer, conversations: Sequence[list[dict]], max_length: int | None) -> list[dict]:
    examples = []
    for index, messages in enumerate(conversations):
        if not has_assistant_message(messages):
            raise ValueError(f"conversation {index} has no assistant message")
        example = tokenize_example(tokenizer, messages)
        if max_length is not None:
            example = truncate_example(example, max_length)
        if all(label == IGNORE_INDEX for label in example["labels"][1:]):
            raise ValueError(f"conversation {index} has no assistant tokens to score"
                             + (f" within max_length={max_length}" if max_length is not None else ""))
        examples.append(example)
    return examples


def _pad(batch: list[dict], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels (-100 on padding)."""
    width = max(len(ex["input_ids"]) for ex in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for row, ex in enumerate(batch):
        n = len(ex["input_ids"])
        ids[row, :n] = torch.tensor(ex["input_ids"])
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(ex["labels"])
    return ids.to(device), mask.to(device), labels.to(device)


@torch.no_grad()
def _token_stats(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per response token of a (B, T, V) batch: entropy and NLL (float64), and the row each token is in."""
    logits, labels = shift_for_causal_lm(logits, labels)
    mask = labels != IGNORE_INDEX
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(labels)[mask]
    z, y = logits[mask], labels[mask]
    entropy, nll = [], []
    for z_chunk, y_chunk in zip(z.split(_ROWS_PER_CHUNK), y.split(_ROWS_PER_CHUNK)):
        z_chunk = z_chunk.float()
        # log-softmax in float32; -inf logits (banned tokens) would give 0 * -inf = NaN, so clamp.
        log_p = F.log_softmax(z_chunk.clamp(min=torch.finfo(torch.float32).min), dim=-1)
        # H = -sum_j p_j log p_j: float32 terms, summed over the vocabulary in float64.
        entropy.append(-(log_p.exp() * log_p).sum(-1, dtype=torch.float64))
        nll.append(-log_p.gather(1, y_chunk.unsqueeze(1)).squeeze(1).double())
    return torch.cat(entropy), torch.cat(nll), rows


@torch.no_grad()
def response_entropy(model, tokenizer, conversations: Sequence[list[dict]], batch_size: int = 16,
                     max_length: int | None = None) -> dict:
    """Entropy and perplexity of `model` on the assistant tokens of `conversations` (teacher forcing).

    Each conversation is rendered with the tokenizer's chat template (`gemsft.chat_format.tokenize_example`:
    labels are -100 outside assistant turns); the distribution at position t-1 predicts token t.
    Returns {"entropy": token-level mean entropy (nats), "entropy_mean_of_sequences": mean over
    conversations of their mean, "nll": token-level mean NLL, "perplexity": exp(nll), "tokens",
    "conversations", "per_conversation": {"entropy", "nll", "tokens"}: each conversation's mean entropy,
    mean NLL and response-token count, in input order (for bootstrap intervals over conversations)}. Batches are right-padded; the result does not depend on `batch_size` (up to
    float32 round-off). `max_length` truncates long conversations (None: no truncation).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not conversations:
        raise ValueError("response_entropy needs at least one conversation")
    examples = _encode(tokenizer, conversations, max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # Longest first, so batches hold similar lengths (less padding); sums do not depend on the order.
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    entropy_sum = torch.zeros(len(examples), dtype=torch.float64)
    nll_sum = torch.zeros(len(examples), dtype=torch.float64)
    counts = torch.zeros(len(examples), dtype=torch.long)
    try:
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            ids, mask, labels = _pad([examples[i] for i in index], pad_id, device)
            logits = model(input_ids=ids, attention_mask=mask).logits
            entropy, nll, rows = _token_stats(logits, labels)
            target = torch.tensor(index)[rows.cpu()]
            entropy_sum.index_add_(0, target, entropy.cpu())
            nll_sum.index_add_(0, target, nll.cpu())
            counts.index_add_(0, target, torch.ones_like(target))
    finally:
        model.train(was_training)
    tokens = int(counts.sum())
    nll = float(nll_sum.sum()) / tokens
    return {
        "entropy": float(entropy_sum.sum()) / tokens,
        "entropy_mean_of_sequences": float((entropy_sum / counts).mean()),
        "nll": nll,
        "perplexity": math.exp(nll),
        "tokens": tokens,
        "conversations": len(examples),
        "per_conversation": {"entropy": (entropy_sum / counts).tolist(), "nll": (nll_sum / counts).tolist(),
                             "tokens": counts.tolist()},
    }


def load_model_and_tokenizer(model_dir: str | os.PathLike, loading: dict | None = None,
                             chat_template_from: str | None = None):
    """The model (a directory or hub id) on the stage's device in the `loading` settings' dtype
    (gemsft.model_loading: float32 on a CPU, bf16 on a GPU by default), and its tokenizer."""
    model = load_causal_lm(model_dir, loading)  # resolves a hub id and checks the directory first
    tokenizer = load_tokenizer(model_dir, chat_template_from)  # requires a chat template; pad falls back to eos
    return model.eval(), tokenizer


def entropy_from_file(model_dir: str | os.PathLike, sft_test_path: str | os.PathLike, batch_size: int = 16,
                      max_length: int | None = None, chat_template_from: str | None = None,
                      loading: dict | None = None) -> dict:
    """`response_entropy` of the model in `model_dir` (base or fine-tuned; loaded with the `loading`
    settings) on the `messages` of every row of the SFT test split, with the rows' ids (or indices) as
    `per_conversation["id"]`. Logits are turned into entropies in float32 whatever the model's dtype."""
    rows = files.read_jsonl(sft_test_path)
    conversations = []
    for index, row in enumerate(rows):
        if not row.get("messages"):
            raise ValueError(f"{sft_test_path}: row {index} has no field 'messages'")
        conversations.append(row["messages"])
    model, tokenizer = load_model_and_tokenizer(model_dir, loading, chat_template_from=chat_template_from)
    try:
        stats = response_entropy(model, tokenizer, conversations, batch_size=batch_size, max_length=max_length)
    except ValueError as err:
        raise ValueError(f"{sft_test_path}: {err}") from None
    stats["per_conversation"]["id"] = [row.get("id", str(index)) for index, row in enumerate(rows)]
    return stats


def stats_per_prompt(stats: dict, task: str = "sft_test") -> list[dict]:
    """Per-conversation rows whose token-weighted mean is the token-level entropy, and whose
    exp(token-weighted mean NLL) is the perplexity (`gemsft.evaluate.stage.mean_rows` gives both back)."""
    from gemsft.evaluate.stage import metric

    per = stats["per_conversation"]
    rows = []
    for pid, entropy, nll, tokens in zip(per["id"], per["entropy"], per["nll"], per["tokens"]):
        rows += [metric(task, "entropy", entropy, prompt_id=pid, weight=tokens),
                 metric(task, "perplexity", nll, prompt_id=pid, weight=tokens, link="exp")]
    return rows


@torch.no_grad()
def next_token_distribution(model_dir: str | os.PathLike, prompt: str, prefix: str, top_k: int = 20,
                            loading: dict | None = None) -> dict:
    """Figure 11: the model's next-token distribution after a chat prompt and the start of the answer.

    The prompt goes through the chat template (one user turn, generation prompt) and `prefix` is
    appended as the start of the assistant's reply, so the distribution is over the answer's first
    token. Returns the `top_k` most likely tokens (decoded), their probabilities (descending), and
    the total probability of the rest.
    """
    model, tokenizer = load_model_and_tokenizer(model_dir, loading)
    ids = torch.tensor([encode_rendered(tokenizer, prompt_text(tokenizer, prompt) + prefix)], device=model.device)
    probs = torch.softmax(model(input_ids=ids).logits[0, -1].double(), dim=-1)
    top = torch.topk(probs, min(top_k, probs.numel()))
    return {"prompt": prompt, "prefix": prefix,
            "tokens": [tokenizer.decode([i]) for i in top.indices.tolist()],
            "probs": top.values.tolist(), "rest": float(1.0 - top.values.sum())}


# --------------------------------------------------------------------------- parameter distance


def _module_key(name: str) -> str:
    """Group of a parameter for the breakdown: "model.layers.3" for a decoder layer's parameters,
    otherwise the parameter's module ("model.embed_tokens", "model.norm", "lm_head")."""
    match = re.match(r"(.*?\blayers\.\d+)\.", name)
    if match:
        return match.group(1)
    return name.rsplit(".", 1)[0] if "." in name else name


def _parameters(model_dir: str | os.PathLike, loading: dict | None = None) -> dict[str, torch.Tensor]:
    # The checkpoint's own dtype, whatever the settings say: no rounding before the float64
    # difference. On the stage's device (a GPU differences an 8B model in seconds). named_parameters()
    # lists a tied parameter (embeddings = lm_head) once, so it is counted once.
    model = load_causal_lm(model_dir, loading, dtype=CHECKPOINT_DTYPE)
    return {name: p.detach() for name, p in model.named_parameters()}


@torch.no_grad()
def parameter_distance(base_dir: str | os.PathLike, model_dir: str | os.PathLike,
                       loading: dict | None = None) -> dict:
    """l2 norm of (fine-tuned - pre-trained) over all parameters, accumulated in float64. Either
    model may be a directory or a hub id; `loading` gives the attention setting (the dtype is the
    checkpoint's).

    Returns {"l2", "base_l2" (norm of the base parameters), "relative" (l2 / base_l2), "parameters"
    (number of scalars), "by_module": {group: l2}} where groups are decoder layers, embeddings, final
    norm and lm_head (`sqrt(sum of by_module squared) == l2`). Raises ValueError naming the first
    parameter whose name or shape differs.
    """
    base, tuned = _parameters(base_dir, loading), _parameters(model_dir, loading)
    for a, b in zip(base, tuned):
        if a != b:
            raise ValueError(f"parameter names differ: {a!r} in {base_dir} vs {b!r} in {model_dir}")
    if len(base) != len(tuned):
        longer, name = (base_dir, list(base)[len(tuned)]) if len(base) > len(tuned) else (model_dir, list(tuned)[len(base)])
        raise ValueError(f"parameter {name!r} of {longer} has no counterpart "
                         f"({len(base)} parameters in {base_dir}, {len(tuned)} in {model_dir})")
    squared: dict[str, float] = {}
    base_squared = 0.0
    scalars = 0
    for name, a in base.items():
        b = tuned[name]
        if a.shape != b.shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(a.shape)} in {base_dir} "
                             f"but {tuple(b.shape)} in {model_dir}")
        a64 = a.to(torch.float64)
        diff = b.to(torch.float64) - a64
        key = _module_key(name)
        squared[key] = squared.get(key, 0.0) + float(torch.dot(diff.flatten(), diff.flatten()))
        base_squared += float(torch.dot(a64.flatten(), a64.flatten()))
        scalars += a.numel()
    l2 = math.sqrt(math.fsum(squared.values()))
    base_l2 = math.sqrt(base_squared)
    return {
        "l2": l2,
        "base_l2": base_l2,
        "relative": l2 / base_l2 if base_l2 else float("nan"),
        "parameters": scalars,
        "by_module": {key: math.sqrt(value) for key, value in squared.items()},
    }
