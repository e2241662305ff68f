"""How much `evaluation.compat: paper_code` changes the math evaluation, on real GSM8K text.

Usage: python benchmarks/math_compat_effect.py [--mirror DIR] [--seed 15] [--out FILE]

Reads GSM8K (test and train) from the data mirror (``--mirror``, else $GEMSFT_DATA_MIRROR, else
../shared/data beside the checkout) and measures, default mode against paper_code:

1. gold parsing (`gemsft.data.gsm8k.parse_final_answer`): rows whose gold differs;
2. extraction (`gemsft.math_answer`): every test solution with its final answer rewritten in
   each form of tests/gsm8k_answer_forms.py, the number of responses whose value differs and the
   accuracy of each mode against its own gold;
3. scoring (`gemsft.evaluate.math_accuracy.evaluate_math`) on a greedy response and 16 samples per
   question built from those forms (seeded), and the questions whose majority verdict each voting
   rule changes on its own.

Deterministic (no timings); writes benchmarks/results/math_compat_effect.txt (``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the answer forms are the tests' (tests/gsm8k_answer_forms.py)

from gsm8k_answer_forms import perturbations, sampled_responses  # noqa: E402
from stamp import commit_stamp  # noqa: E402
from text_table import table  # noqa: E402  (benchmarks/ is the script's directory, first on sys.path)

from gemsft.data import load_gsm8k, read_gsm8k  # noqa: E402
from gemsft.data.gsm8k import parse_final_answer  # noqa: E402
from gemsft.evaluate.math_accuracy import evaluate_math, gold_answer  # noqa: E402
from gemsft.math_answer import PAPER_CODE, extract_math_answer, extract_math_answer_with_source  # noqa: E402

DEFAULT_MIRROR = REPO.parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "math_compat_effect.txt"


def pct(x: float) -> str:
    return f"{x:.1f}"


def gold_section(mirror: Path) -> list[str]:
    rows = []
    for split in ("test", "train"):
        data = read_gsm8k(mirror / f"gsm8k/{split}.jsonl")
        differ = [i for i, r in enumerate(data)
                  if parse_final_answer(r["solution"]) != parse_final_answer(r["solution"], PAPER_CODE)]
        shown = ", ".join(f"{i} ({data[i]['answer']} vs {parse_final_answer(data[i]['solution'], PAPER_CODE)})"
                          for i in differ[:4])
        rows.append([split, f"{len(data):,}", str(len(differ)), shown + (", ..." if len(differ) > 4 else "")])
    return ["1. Gold parsing: rows whose default gold differs from the official label", "",
            *table(["split", "rows", "differ", "rows (default vs paper_code)"], rows)]


def extraction_section(records: list[dict]) -> list[str]:
    by_form: dict[str, list] = {}
    for record in records:
        gold, official_gold = record["answer"], gold_answer(record, PAPER_CODE)
        for form, text, _, _ in perturbations(record["reference"]):
            answer = extract_math_answer_with_source(text)
            paper = extract_math_answer(text, PAPER_CODE)
            by_form.setdefault(form, []).append((answer.value != paper, answer.marker_value == gold,
                                                 answer.value == gold, paper == official_gold))
    rows = [[form, str(sum(e[0] for e in entries)), pct(100 * sum(e[1] for e in entries) / len(entries)),
             pct(100 * sum(e[2] for e in entries) / len(entries)), pct(100 * sum(e[3] for e in entries) / len(entries))]
            for form, entries in by_form.items()]
    return [f"2. Extraction: {len(records):,} GSM8K test solutions, the final answer in each form "
            "(tests/gsm8k_answer_forms.py)", "",
            *table(["form", "values differ", "default % (marker)", "default % (fallback)", "paper_code %"], rows)]


def _vote(values: list, keep_none: bool, rounded: bool):
    votes = [v if v is None or not rounded else round(v) for v in values if keep_none or v is not None]
    return Counter(votes).most_common(1)[0][0] if votes else None


def scoring_section(records: list[dict], seed: int) -> list[str]:
    greedy, samples = sampled_responses(records, seed)
    def rows_of(entries: dict) -> list[dict]:
        return [{"prompt_id": pid, "sample_index": i, "text": e[1], "finish_reason": "stop"}
                for pid, es in entries.items() for i, e in enumerate(es)]

    greedy_rows, sample_rows = rows_of({p: [e] for p, e in greedy.items()}), rows_of(samples)
    results = {mode: {(r["metric"], r["k"]): r["value"] for r in evaluate_math(records, greedy_rows, sample_rows,
                                                                              compat=mode)[0]}
               for mode in (None, PAPER_CODE)}
    names = ["greedy_accuracy", "greedy_accuracy_valid", "greedy_accuracy_fallback", "majority_accuracy",
             "majority_accuracy_fallback", "pass_rate", "pass_rate_fallback"]
    score_rows = []
    for name in names:
        k = None if name.startswith("greedy") else 16
        score_rows.append([name if k is None else f"{name}@{k}",
                           *(pct(results[m][name, k]) if (name, k) in results[m] else "-" for m in (None, PAPER_CODE))])
    # Each voting rule alone: the same extraction and gold, the verdict with and without the rule.
    none_vote = rounding = 0
    for record in records:
        pid = record["id"]
        paper = [extract_math_answer(e[1], PAPER_CODE) for e in samples[pid]]
        official_gold = gold_answer(record, PAPER_CODE)
        none_vote += (_vote(paper, True, True) == official_gold) != (_vote(paper, False, True) == official_gold)
        exact = [extract_math_answer_with_source(e[1]).marker_value for e in samples[pid]]
        gold = record["answer"]
        rounding += (_vote(exact, False, False) is not None and round(_vote(exact, False, False)) == round(gold)) != \
            (_vote(exact, False, True) == round(gold))
    return [f"3. Scoring: {len(records):,} questions, a greedy response and 16 samples each (seed {seed}), "
            "every response a real solution in one of the forms", "",
            *table(["metric", "default", "paper_code"], score_rows), "",
            "Questions whose majority@16 verdict one voting rule changes on its own:",
            f"  'no answer' is a vote (paper_code extraction, rounded votes): {none_vote}",
            f"  votes rounded to integers before voting (default extraction, marker answers, rounded comparison): "
            f"{rounding}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, default=Path(os.environ.get("GEMSFT_DATA_MIRROR") or DEFAULT_MIRROR))
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    records = load_gsm8k(mirror=args.mirror)
    lines = ["Math evaluation: default mode vs evaluation.compat: paper_code, on real GSM8K text "
             f"(benchmarks/math_compat_effect.py, {commit_stamp()})", "",
             *gold_section(args.mirror), "", *extraction_section(records), "", *scoring_section(records, args.seed)]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
