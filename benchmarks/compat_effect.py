"""The effect on real text of each deliberate difference between the default evaluation and
`evaluation.compat: paper_code` in diversity and the reward input (the table of docs/compat.md).

Usage: python benchmarks/compat_effect.py [--mirror DIR] [--prompts 805] [--responses 8]
                                          [--sbert-prompts 24] [--seed 0] [--out FILE]

Samples: `metrics_bench.build_responses`, from the AlpacaEval GPT-4-Turbo outputs of the data mirror
(``--mirror``, else $GEMSFT_DATA_MIRROR, else ../shared/data): the first ``--prompts`` of the 805 prompts
x ``--responses`` responses
of ~300 words that overlap partially, as a model's samples do. Each diversity number is the mean over
prompts of the per-prompt value (Sentence-BERT, all-MiniLM-L6-v2 on CPU: over the first
``--sbert-prompts`` prompts only, for time). Rows switch one choice at a time from the default, then
all of them (paper_code).

The official strings need Meta-Llama-3-8B-Instruct's tokenizer, which is not available offline. Only
two of its properties reach the strings: its chat template and its decode clean-up (its hub config
sets clean_up_tokenization_spaces; the byte-level BPE round trip is otherwise lossless). So the
strings are built with tests/llama31_tokenizer.py's tokenizer (the real special tokens) given that
template and that setting; the Llama-3.1-Instruct row uses that template instead, which is what
`evaluation.compat_tokenizer: null` gives in the paper tier.

Short responses: every sample cut to its first 0, 1 or 2 words (seeded), the case where the
n-gram rules differ most. Reward input: the 805 (instruction, GPT-4 output) pairs, as the reward
model would read a sample; rewards themselves need FsfairX-LLaMA3-RM-v0.1, which is not available
offline, so only the input is measured.

Writes benchmarks/results/compat_effect.txt (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
from metrics_bench import build_responses, load_outputs  # benchmarks/ is the script's directory
from stamp import commit_stamp
from text_table import table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Llama-3-shaped tokenizer of the tests
OUT = Path(__file__).resolve().parent / "results" / "compat_effect.txt"


def llama3_shaped_tokenizer(template: str, corpus: list[str]):
    from llama31_tokenizer import DEFAULT_CORPUS, llama31_tokenizer

    tokenizer = llama31_tokenizer([*DEFAULT_CORPUS, *corpus], vocab_size=1000)
    tokenizer.chat_template = template
    tokenizer.clean_up_tokenization_spaces = True
    return tokenizer


def mean_over(prompts: list[list[str]], fn) -> float:
    return float(np.mean([fn(rs) for rs in prompts]))


def diversity_row(label: str, texts: list[list[str]], sbert: float, ngram_compat, bleu_compat) -> list[str]:
    from gemsft.evaluate.diversity_metrics import ngram_diversity, self_bleu_diversity

    ngram = mean_over(texts, lambda rs: ngram_diversity(rs, compat=ngram_compat))
    bleu = mean_over(texts, lambda rs: self_bleu_diversity(rs, compat=bleu_compat))
    return [label, f"{ngram:.2f}", f"{bleu:.2f}", f"{sbert:.2f}"]


def sbert_mean(model, prompts: list[list[str]]) -> float:
    from gemsft.evaluate.diversity_metrics import sbert_diversity_from_embeddings

    emb = model.encode([t for rs in prompts for t in rs], batch_size=64, convert_to_numpy=True,
                       show_progress_bar=False)
    m = len(prompts[0])
    return float(np.mean([sbert_diversity_from_embeddings(emb[i * m:(i + 1) * m]) for i in range(len(prompts))]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=None)
    parser.add_argument("--prompts", type=int, default=805, help="the first this many AlpacaEval prompts")
    parser.add_argument("--responses", type=int, default=8, help="responses per prompt")
    parser.add_argument("--sbert-prompts", type=int, default=24, help="prompts embedded for Sentence-BERT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from llama31_tokenizer import CHAT_TEMPLATE, LLAMA3_CHAT_TEMPLATE

    import nltk
    import sacrebleu
    import transformers

    from gemsft.chat_format import paper_code_prompt, paper_code_round_trip
    from gemsft.evaluate.diversity import paper_code_texts
    from gemsft.evaluate.diversity_metrics import ngram_diversity, load_sbert_model
    from gemsft.score.reward_model import render

    start = time.perf_counter()
    outputs, instructions, root = load_outputs(args.mirror)
    prompts = build_responses(outputs, args.seed, m=args.responses)[:args.prompts]
    outputs, instructions = outputs[:args.prompts], instructions[:args.prompts]
    llama3 = llama3_shaped_tokenizer(LLAMA3_CHAT_TEMPLATE, outputs[:200])
    llama31 = llama3_shaped_tokenizer(CHAT_TEMPLATE, outputs[:200])
    strings3 = [paper_code_texts(llama3, instr, rs) for instr, rs in zip(instructions, prompts)]
    strings31 = [paper_code_texts(llama31, instr, rs) for instr, rs in zip(instructions, prompts)]
    model = load_sbert_model(None)
    k = args.sbert_prompts

    lines = [f"compat_effect: {len(prompts)} AlpacaEval prompts x {args.responses} responses built from the GPT-4-Turbo "
             f"outputs in {os.path.relpath(root, ROOT)} (seed {args.seed}); Sentence-BERT (all-MiniLM-L6-v2) over the first {k} prompts",
             f"{commit_stamp()}, date {datetime.date.today()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, transformers "
             f"{transformers.__version__}, nltk {nltk.__version__}, sacrebleu {sacrebleu.__version__}", ""]

    lines.append("Diversity, mean over prompts (0-100); one choice switched at a time, then all (paper_code)")
    sbert = {name: sbert_mean(model, texts[:k]) for name, texts in
             (("responses", prompts), ("llama3", strings3), ("llama31", strings31))}
    rows = [
        diversity_row("default: responses, whitespace n-grams, Self-BLEU vs all others", prompts, sbert["responses"],
                      None, None),
        diversity_row("  strings only: official chat-template strings (Llama-3 template)", strings3, sbert["llama3"],
                      None, None),
        diversity_row("  n-grams only: nltk.word_tokenize, empty n scores 0", prompts, sbert["responses"],
                      "paper_code", None),
        diversity_row("  Self-BLEU only: first other response, no effective order", prompts, sbert["responses"],
                      None, "paper_code"),
        diversity_row("paper_code: all of the above (Llama-3 template)", strings3, sbert["llama3"], "paper_code",
                      "paper_code"),
        diversity_row("paper_code with the Llama-3.1-Instruct template", strings31, sbert["llama31"], "paper_code",
                      "paper_code"),
    ]
    lines += table(["setting", "n-gram", "Self-BLEU", "SBERT"], rows) + [""]

    rng = random.Random(args.seed)
    short = [[" ".join(r.split()[:rng.randint(0, 2)]) for r in rs] for rs in prompts]
    short = [rs if any(rs) else [prompts[i][0].split()[0], *rs[1:]] for i, rs in enumerate(short)]
    lines.append(f"N-gram diversity of short responses (each response cut to its first 0-2 words, {len(short)} prompts)")
    lines += table(["setting", "n-gram"], [
        ["default: whitespace tokens, an n without n-grams skipped",
         f"{mean_over(short, ngram_diversity):.2f}"],
        ["paper_code: nltk.word_tokenize, an n without n-grams scores 0",
         f"{mean_over(short, lambda rs: ngram_diversity(rs, compat='paper_code')):.2f}"]]) + [""]

    header = "<|start_header_id|>assistant<|end_header_id|>\n\n"
    prompt_changed = sum(paper_code_prompt(llama3, p) != p.strip() for p in instructions)
    answer_changed = sum(paper_code_round_trip(llama3, o) != o for o in outputs)
    either = sum(paper_code_prompt(llama3, p) != p.strip() or paper_code_round_trip(llama3, o) != o
                 for p, o in zip(instructions, outputs))
    removed = sum(len(o) - len(paper_code_round_trip(llama3, o)) for o in outputs)
    system_text = sum(paper_code_prompt(llama31, p).startswith("system\n\n") for p in instructions)
    appended = sum(render(llama3, p, o, compat="paper_code", detokenizer=llama3) == render(llama3, p, o) + llama3.encode(
        header, add_special_tokens=False) for p, o in zip(instructions, outputs))
    n = len(instructions)
    lines.append(f"Reward input of the {n} (instruction, GPT-4 output) pairs")
    lines += table(["what changes under paper_code", "pairs", "share"], [
        ["ends with an empty assistant header (4 tokens in Llama-3's vocabulary)", f"{n}", "100.0%"],
        ["  and nothing else (Llama-3 template, round trip changes no text)", f"{appended}", f"{100 * appended / n:.1f}%"],
        ["prompt changed by the round trip's clean-up (Llama-3 template)", f"{prompt_changed}",
         f"{100 * prompt_changed / n:.1f}%"],
        ["response changed by the round trip's clean-up", f"{answer_changed}", f"{100 * answer_changed / n:.1f}%"],
        ["prompt or response changed", f"{either}", f"{100 * either / n:.1f}%"],
        ["prompt starts with Llama-3.1's system text (Llama-3.1 template as detokenizer)", f"{system_text}",
         f"{100 * system_text / n:.1f}%"]])
    lines.append(f"characters the clean-up deletes from the {n} responses: {removed} in total")
    lines.append("reward values: not measured (FsfairX-LLaMA3-RM-v0.1 is not available offline)")
    lines.append(f"\nwall time {time.perf_counter() - start:.0f} s")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
