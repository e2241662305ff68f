"""The chat format shared by every stage that tokenises conversations: the tokenizer with its chat
template, a conversation's tokens, and the loss mask (assistant tokens only)."""

from __future__ import annotations

from pathlib import Path
from transformers import AutoTokenizer


IGNORE_INDEX = -100


def load_tokenizer(path: str | Path, chat_template_from: str | Path | None = None):
    """The tokenizer of a model, with the chat template of `chat_template_from` (a directory or hub id)
    when given: the paper formats Llama-3.1-8B's data with Llama-3.1-8B-Instruct's template."""
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if chat_template_from:
        template = AutoTokenizer.from_pretrained(str(chat_template_from)).chat_template
        if not template:
            raise ValueError(f"model.chat_template_from: {chat_template_from} has no chat_template")
        tokenizer.chat_template = template
    if not tokenizer.chat_template:
        raise ValueError(f"{path}: the tokenizer has no chat_template; SFT needs one to mask the loss "
                         f"(set model.chat_template_from)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                              add_generation_prompt=add_generation_prompt)["input_ids"])


def _prefix_assistant_mask(tokenizer, messages: list[dict], ids: list[int]) -> list[int]:
    """open-instruct's masking for templates without {% generation %} markers (e.g. Llama-3.1-Instruct):
    assistant turn i spans from the end of the rendered messages[:i] with the generation prompt to
    the end of the rendered messages[:i + 1]."""
    mask = [0] * len(ids)
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        start = len(_render(tokenizer, messages[:i], add_generation_prompt=True))
        end = len(_render(tokenizer, messages[:i + 1]))
        if _render(tokenizer, messages[:i + 1]) != ids[:end]:
            raise ValueError("the chat template does not render a conversation as the extension of its prefixes; "
                             "it needs {% generation %} markers for assistant-only loss masking")
        mask[start:end] = [1] * (end - start)
    return mask


def tokenize_example(tokenizer, messages: list[dict]) -> dict:
    """input_ids and labels of one conversation, labels = -100 outside assistant turns.

    The template's {% generation %} markers give the assistant tokens where it has them (the world
    tokenizer's); otherwise each assistant turn is found by rendering the conversation's prefixes, as
    open-instruct does for Llama-3.1-Instruct's template."""
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
    ids, mask = list(encoded["input_ids"]), list(encoded["assistant_masks"])
    if "{% generation %}" not in (tokenizer.chat_template or "") and "{%- generation %}" not in (
            tokenizer.chat_template or ""):
        mask = _prefix_assistant_mask(tokenizer, messages, ids)
    labels = [i if m else IGNORE_INDEX for i, m in zip(ids, mask)]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}
