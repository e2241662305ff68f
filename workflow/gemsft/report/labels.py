"""Display names and the order of runs, shared by the tables and the figures so both read alike.

Free of pandas and matplotlib: the figures import it beside matplotlib, the tables beside pandas.
"""

from __future__ import annotations

from gemsft.config import NO_BETA, beta_label

# The paper's reading order: the pre-trained model, the CE family, then GEM; then the newer objectives.
OBJECTIVE_ORDER = ("base", "ce", "ce_wd", "neft", "ce_entropy", "gem", "gem_log_sigmoid", "dft", "ts2", "eaft",
                   "asft")

OBJECTIVE_NAMES = {
    "base": "Pre-trained",
    "ce": "CE",
    "ce_wd": "CE + WD",
    "neft": "NEFT",
    "ce_entropy": "CE + Entropy",
    "gem": "GEM",
    "gem_log_sigmoid": "GEM (log-sigmoid)",
    "dft": "DFT",
    "ts2": "TS²",
    "eaft": "EAFT",
    "asft": "ASFT",
}

TASK_NAMES = {"chat": "chat", "code": "code", "humaneval": "HumanEval", "math": "math",
              "knowledge": "knowledge", "sft_test": "SFT test set", "parameters": "parameters",
              # the leaderboard tasks of the real-data forgetting evaluation
              "arc_challenge": "ARC", "hellaswag": "HellaSwag", "mmlu": "MMLU", "truthfulqa_mc2": "TruthfulQA",
              "winogrande": "WinoGrande", "gsm8k": "GSM8K"}
METRIC_NAMES = {"ngram_diversity": "N-gram diversity", "self_bleu_diversity": "Self-BLEU diversity",
                "sbert_diversity": "Sentence-BERT diversity", "greedy_accuracy": "greedy accuracy",
                "alignment_tax_average": "alignment tax (average)", "entropy": "entropy",
                "perplexity": "perplexity", "coverage": "coverage", "kl_to_world": "KL to world",
                # the world's oracle reward (gemsft.score.oracle) and the reward model it checks
                "oracle_win_rate": "oracle win rate", "oracle_hard_win_rate": "oracle hard win rate",
                "oracle_bon_reward": "oracle best-of-N quality",
                "rm_selected_oracle_win_rate": "oracle win rate of the reward model's pick",
                "rm_selected_oracle_hard_win_rate": "oracle hard win rate of the reward model's pick",
                "rm_selected_oracle_reward": "oracle quality of the reward model's pick",
                "reward_model_accuracy": "reward model held-out accuracy",
                # diversity beyond the paper's three (gemsft.evaluate.diversity_metrics)
                "ead_diversity": "EAD (expectation-adjusted distinct-1)", "vendi_score": "Vendi score",
                "distinct_k": "distinct answers (distinct_k)"}


def beta_text(beta) -> str | None:
    """The beta as shown (its label), or None for objectives without beta."""
    label = beta_label(beta)
    return None if label == NO_BETA else label


def objective_label(objective: str, beta=NO_BETA) -> str:
    """"CE", "GEM (β=0.7)", "GEM (log-sigmoid, β=0.7)"; an unknown objective shows its own name."""
    name = OBJECTIVE_NAMES.get(objective, objective)
    b = beta_text(beta)
    if b is None:
        return name
    if name.endswith(")"):
        return f"{name[:-1]}, β={b})"
    return f"{name} (β={b})"


def run_sort_key(objective: str, beta=NO_BETA) -> tuple:
    """Objectives in OBJECTIVE_ORDER (unknown ones after, by name); betas from large to small as in
    the paper's Table 3, the no-beta run first."""
    known = objective in OBJECTIVE_ORDER
    rank = OBJECTIVE_ORDER.index(objective) if known else len(OBJECTIVE_ORDER)
    b = beta_text(beta)
    try:
        beta_key = (0, 0.0) if b is None else (1, -float(b))
    except ValueError:  # a non-numeric label still sorts, after the numeric ones
        beta_key = (2, 0.0)
    return (rank, "" if known else objective, beta_key, b or "")
