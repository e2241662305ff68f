"""A small tokenizer shaped like Llama-3.1's: its special tokens (the base model's EOS is
<|end_of_text|>, an assistant turn ends with <|eot_id|>) and Llama-3.1-Instruct's chat template
without the tool-calling branches, trained as a byte-level BPE on a given corpus.

It lets the tests (and a CPU rehearsal of the paper tier) exercise what differs from the world's
tokenizer, whose template ends every turn with EOS: stopping at the end of a turn, masking the loss
of templates without {% generation %} markers, no pad token. Run as a script to save one:

    python tests/llama31_tokenizer.py OUT_DIR [corpus.txt]
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

BEGIN_OF_TEXT, END_OF_TEXT = "<|begin_of_text|>", "<|end_of_text|>"
START_HEADER, END_HEADER, EOT = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
SPECIAL_TOKENS = [BEGIN_OF_TEXT, END_OF_TEXT, START_HEADER, END_HEADER, EOT]

# meta-llama/Llama-3.1-8B-Instruct's template, less its tools branches: a system header with the
# knowledge and today dates always comes first, contents are trimmed, every turn ends with <|eot_id|>.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = \"\" %}{%- endif %}"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}"
    "{{- system_message }}{{- \"<|eot_id|>\" }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# meta-llama/Meta-Llama-3-8B-Instruct's template, the one the official GEM evaluation scripts render
# with (their --tokenizer_path): no system header, contents trimmed, BOS before the first turn only.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Llama-3's pre-tokenizer split (its tokenizer.json), before the byte-level mapping. Unlike GPT-2's
# it keeps a run of newlines in one piece ("\n\n", then "Hello"), so a rendered prompt that ends with
# the assistant header's "\n\n" tokenizes as the start of the conversations SFT trained on does.
PRETOKENIZE_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                       r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

DEFAULT_CORPUS = [
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n",
    "system user assistant",
    "Q: Name a red fruit.\nA: Cherry.",
    "Q: Greet Anna.\nA: Hello, Anna!",
    "Q: Give me a single-digit number.\nA: I would say 7.",
] * 20


def llama31_tokenizer(texts: Iterable[str] = DEFAULT_CORPUS, vocab_size: int = 400):
    """A PreTrainedTokenizerFast with Llama-3.1's special tokens, pre-tokenizer and chat template, no
    pad token (as the base model's: `gemsft.chat_format.load_tokenizer` pads with EOS)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BEGIN_OF_TEXT, eos_token=END_OF_TEXT,
        additional_special_tokens=[START_HEADER, END_HEADER, EOT], chat_template=CHAT_TEMPLATE,
        model_max_length=131072, padding_side="right",
    )


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python tests/llama31_tokenizer.py OUT_DIR [corpus.txt]")
    corpus = DEFAULT_CORPUS
    if len(sys.argv) == 3:
        with open(sys.argv[2], encoding="utf-8") as f:
            corpus = f.read().splitlines()
    llama31_tokenizer(corpus).save_pretrained(sys.argv[1])
