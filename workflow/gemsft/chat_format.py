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
    the "qa" or "raw" prompt format) may have no template. Hub ids resolve through
    `gemsft.model_loading.resolve_model` (the local Hugging Face cache), as the models do."""
    from transformers import AutoTokenizer

    from gemsft.model_loading import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model(path)))
    if chat_template_from:
        source = resolve_model(chat_template_from, tokenizer_only=True)
        template = AutoTokenizer.from_pretrained(str(source)).chat_template
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


# --------------------------------------------------------------------------- the official scripts' text

def paper_code_round_trip(tokenizer, text: str) -> str:
    """`tokenizer.decode(tokenizer.encode(text), skip_special_tokens=True)` as the official GEM
    evaluation scripts ran it (transformers 4.45.2): special tokens dropped, and, where the tokenizer's
    config sets `clean_up_tokenization_spaces` (Llama-3's and Llama-3.1's hub configs do), the
    BERT-era clean-up that deletes the space before `. ? ! ,` and `'s 'm 've 're n't`. transformers 5
    skips that clean-up for BPE tokenizers, so it is applied here explicitly."""
    out = tokenizer.decode(tokenizer.encode(text), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return tokenizer.clean_up_tokenization(out) if getattr(tokenizer, "clean_up_tokenization_spaces", False) else out


def paper_code_prompt(tokenizer, prompt: str) -> str:
    """The user prompt as the official evaluation scripts recover it (`evaluation_diversity.py` and
    `evaluation_reward.py`, `main`, with a detokenizer): the saved prompt is the templated one
    (`prompt_text`), round-tripped through the tokenizer, with every "user\\n\\n" and "assistant\\n\\n"
    deleted. What the template adds outside those headers stays (Llama-3.1's system header text)."""
    return paper_code_round_trip(tokenizer, prompt_text(tokenizer, prompt)).replace(
        "user\n\n", "").replace("assistant\n\n", "")


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


# --------------------------------------------------------------------------- where a turn ends

# Assistant content the template renders verbatim (no whitespace for a `| trim` to strip, no
# characters a template would escape), so the text after it is exactly what closes the turn.
_TURN_PROBE = "gemsftturnprobe"


def _special_ids(tokenizer) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(i for i, token in decoder.items() if getattr(token, "special", False))
    return ids


def end_of_turn_id(tokenizer) -> int | None:
    """The special token the chat template closes an assistant turn with (Llama-3.1: <|eot_id|>,
    ChatML: <|im_end|>, the world's template: EOS), or None without a template or when the text after
    the assistant's content holds no special token.

    Found by rendering a one-turn conversation whose reply is a probe word and taking the first
    special token after the probe: an SFT model learns to emit exactly that token, so it is where
    its samples end, whatever the base model's EOS is."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    text = tokenizer.apply_chat_template([user_turn("Hi"), assistant_turn(_TURN_PROBE)], tokenize=False)
    at = text.rfind(_TURN_PROBE)
    if at < 0:
        raise ValueError("the chat template does not render the assistant's content; "
                         "cannot find where an assistant turn ends")
    special = _special_ids(tokenizer)
    return next((i for i in encode_rendered(tokenizer, text[at + len(_TURN_PROBE):]) if i in special), None)


def end_of_turn_ids(tokenizer) -> list[int]:
    """The ids that end an assistant reply: the template's end-of-turn token, then EOS (the base
    model's own stop), without repeats. The world's template ends turns with EOS, so it is [EOS]."""
    ids = [i for i in (end_of_turn_id(tokenizer), tokenizer.eos_token_id) if i is not None]
    return list(dict.fromkeys(ids))
