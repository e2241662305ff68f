"""What both sampling backends share: the model's tokenizer and config, the ids generation stops on
(the chat template's end-of-turn token and EOS), and how a generated sequence is cut and labelled."""

from __future__ import annotations

import json
from collections.abc import Sequence
from gemsft.chat_format import end_of_turn_ids, load_tokenizer
from gemsft.model_loading import check_model_dir, resolve_model


def load_sampling_tokenizer(model_dir):
    # A base model samples with the "qa" or "raw" format: its tokenizer may have no chat template.
    return load_tokenizer(model_dir, chat_template_required=False)


def model_config(model_dir) -> dict:
    path = check_model_dir(resolve_model(model_dir), weights=False) / "config.json"  # a hub id: its snapshot
    return json.loads(path.read_text(encoding="utf-8"))


def stop_ids_of(tokenizer, model_dir) -> list[int]:
    """The ids generation stops on, in both backends: the chat template's end-of-turn token and EOS
    (`gemsft.chat_format.end_of_turn_ids`), plus any EOS the model's generation config names."""
    ids = end_of_turn_ids(tokenizer)
    path = resolve_model(model_dir) / "generation_config.json"  # a hub id: its cached snapshot
    if path.exists():
        extra = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
        for i in extra if isinstance(extra, list) else [extra]:
            if i is not None and i not in ids:
                ids.append(i)
    if not ids:
        raise ValueError(f"{model_dir}: the tokenizer has no EOS or end-of-turn token; generation could not stop")
    return ids


def finish(token_ids: Sequence[int], stop_ids: Sequence[int], max_tokens: int) -> tuple[list[int], str]:
    """Generated ids cut after the first stop token (padding after it dropped), and why generation ended."""
    stop = set(stop_ids)
    out = []
    for t in token_ids:
        out.append(int(t))
        if out[-1] in stop:
            return out, "stop"
        if len(out) == max_tokens:
            break
    return out, "length"


def decoded_sample(tokenizer, token_ids: list[int], stop_ids, finish_reason: str) -> dict:
    """One sample as a backend returns it; `generate` keeps all but token_ids in its rows."""
    content = token_ids[:-1] if finish_reason == "stop" and token_ids and token_ids[-1] in stop_ids else token_ids
    return {"token_ids": token_ids, "text": tokenizer.decode(content, skip_special_tokens=True),
            "num_tokens": len(token_ids), "finish_reason": finish_reason}


def head_dim(cfg: dict) -> int:
    return cfg.get("head_dim") or cfg.get("hidden_size", 0) // (cfg.get("num_attention_heads") or 1)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
