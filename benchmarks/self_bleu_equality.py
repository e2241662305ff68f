"""Self-BLEU equals sacrebleu on every prompt of the paper's scale: 805 AlpacaEval prompts x 32 responses.

Usage: python benchmarks/self_bleu_equality.py [--mirror DIR] [--prompts 805] [--workers 2] [--out FILE]

The responses are metrics_bench.py's (same builder, same seed). For both modes,
``gemsft.evaluate.diversity_metrics.self_bleu_diversity`` is compared with sacrebleu called once per
hypothesis, as a plain loop would call it (metrics_bench.py's reference functions):

* ``compat=None``: ``100 - mean_i sacrebleu.sentence_bleu(r_i, others).score``;
* ``compat="paper_code"``: the official GEM script's ``sacrebleu.corpus_bleu([r_i], [others])``.

Nothing is timed: this is the equality check behind metrics_bench.py's speed table, on all prompts
(about half an hour of sacrebleu on one core; ``--workers`` processes share the prompts). Every
prompt must agree within 1e-9, else the script exits 1.

Writes benchmarks/results/self_bleu_equality.txt (``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from metrics_bench import (PROMPTS, TOLERANCE, build_responses, load_outputs,  # benchmarks/ is on sys.path
                           sacrebleu_official_diversity, sacrebleu_sentence_diversity, spread)
from stamp import commit_stamp
from text_table import table
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "self_bleu_equality.txt"
REFERENCES = {None: sacrebleu_sentence_diversity, "paper_code": sacrebleu_official_diversity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompts", type=int, default=PROMPTS, help="evenly spread prompts compared (default: all)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from gemsft.evaluate import diversity_metrics as metrics

    outputs, instructions, root = load_outputs(args.mirror)
    prompts = build_responses(outputs, args.seed)
    paper_texts = [[instr + "\n" + r for r in rs] for instr, rs in zip(instructions, prompts)]
    idx = spread(len(prompts), args.prompts)
    rows, ok = [], True
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for compat, texts in ((None, prompts), ("paper_code", paper_texts)):
            label = "compat=None" if compat is None else "compat='paper_code'"
            chosen = [texts[i] for i in idx]
            ours = [metrics.self_bleu_diversity(t, compat=compat) for t in chosen]
            refs = list(tqdm(pool.map(REFERENCES[compat], chosen, chunksize=4), total=len(chosen),
                             desc=f"sacrebleu, {label}", unit="prompt", file=sys.stdout))
            diff = np.abs(np.array(ours) - np.array(refs))
            ok &= bool(diff.max() <= TOLERANCE)
            worst = idx[int(diff.argmax())]
            rows.append([label, REFERENCES[compat].__name__, f"{len(idx)} of {len(prompts)}", f"{np.mean(ours):.3f}",
                         f"{np.mean(refs):.3f}", f"{diff.max():.1e} (prompt {worst})",
                         "PASS" if diff.max() <= TOLERANCE else "FAIL"])
    lines = [f"self_bleu_equality: {commit_stamp()}; {len(prompts)} prompts x 32 responses built as metrics_bench.py "
             f"builds them from the AlpacaEval GPT-4-Turbo outputs in {os.path.relpath(root, REPO)} "
             f"(seed {args.seed}); ours against sacrebleu called per hypothesis, tolerance {TOLERANCE:g}", ""]
    lines += table(["mode", "reference", "prompts compared", "ours mean", "reference mean", "max |diff|", "result"],
                   rows)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
