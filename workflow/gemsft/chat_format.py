"""The chat format shared by every stage that tokenises conversations: the tokenizer with its chat
template, a prompt or conversation as the template renders it, and SFT's examples with their loss
mask (assistant tokens only).

transformers is imported inside `load_tokenizer` only: the data package imports this module, and
planning the DAG must not pull in torch."""

from __future__ import annotations

from pathlib import Path

IGNORE_INDEX = -100


def load_tokenizer(path: str | Path, chat_template_from: str | Path | None = None,
                   chat_template_required: bool = True):
    """The tokenizer of a model, with the chat template of `chat_template_from` (a directory or hub id)
    when given: the paper formats Llama-3.1-8B's data with Llama-3.1-8B-Instruct's template. Without a
    pad token, EOS pads. `chat_template_required` False: a base model's tokenizer (sampling with
    the "qa" or "raw" prompt format) may have no template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if chat_template_from:
        template = AutoTokenizer.from_pretrained(str(chat_template_from)).chat_template
        if not template:
            raise ValueError(f"model.chat_template_from: {chat_template_from} has no chat_template")
        tokenizer.chat_template = template
    if chat_template_required and not tokenizer.chat_template:
        raise ValueError(f"{path}: the tokenizer has no chat_template; SFT needs one to mask the loss "
                         f"(set model.chat_template_from)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# --------------------------------------------------------------------------- rendering

def user_turn(prompt: str) -> dict:
    return {"role": "user", "content": prompt}


def assistant_turn(response: str) -> dict:
    return {"role": "assistant", "content": response}


def render_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    """Token ids of a conversation as the chat template renders it."""
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                              add_generation_prompt=add_generation_prompt)["input_ids"])


def prompt_text(tokenizer, prompt: str) -> str:
    """The text a chat model is fed for one user prompt: the user turn and the generation prompt."""
    return tokenizer.apply_chat_template([user_turn(prompt)], tokenize=False, add_generation_prompt=True)


def encode_rendered(tokenizer, text: str) -> list[int]:
    """Token ids of text that is already rendered: it holds BOS (the template's or the caller's), so
    the tokenizer adds no special tokens."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# --------------------------------------------------------------------------- examples and the loss mask

def _prefix_assistant_mask(tokenizer, messages: list[dict], ids: list[int]) -> list[int]:
    """open-instruct's masking for templates without {% generation %} markers (e.g. Llama-3.1-Instruct):
    assistant turn i spans from the end of the rendered messages[:i] with the generation prompt to
    the end of the rendered messages[:i + 1]."""
    mask = [0] * len(ids)
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        start = len(render_ids(tokenizer, messages[:i], add_generation_prompt=True))
        end = len(render_ids(tokenizer, messages[:i + 1]))
        if render_ids(tokenizer, messages[:i + 1]) != ids[:end]:
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


def truncate_example(example: dict, max_length: int) -> dict:
    """The example's first `max_length` tokens (ids, attention mask and labels alike)."""
    return {key: values[:max_length] for key, values in example.items()}


def has_assistant_message(messages) -> bool:
    return bool(messages) and any(m.get("role") == "assistant" for m in messages)


def build_dataset(tokenizer, rows: list[dict], max_length: int, length_policy: str, source: str) -> list[dict]:
    """Tokenized SFT examples of rows {messages}; a row that is too long is dropped (the paper) or
    truncated (official code)."""
    if not rows:
        raise ValueError(f"{source}: the SFT dataset is empty")
    examples = []
    for index, row in enumerate(rows):
        messages = row.get("messages")
        if not has_assistant_message(messages):
            raise ValueError(f"{source}: row {index} has no assistant message in field 'messages'")
        if any(m.get("role") == "assistant" and not str(m.get("content") or "").strip() for m in messages):
            raise ValueError(f"{source}: row {index} field 'messages' has an empty assistant message")
        example = tokenize_example(tokenizer, messages)
        if len(example["input_ids"]) > max_length:
            if length_policy == "drop":
                continue
            example = truncate_example(example, max_length)
        if all(label == IGNORE_INDEX for label in example["labels"]):
            continue  # truncation removed every assistant token: nothing to learn from
        examples.append(example)
    if not examples:
        raise ValueError(f"{source}: no example fits train.max_length={max_length}")
    return examples
