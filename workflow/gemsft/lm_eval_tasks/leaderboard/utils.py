"""Helpers of the Open LLM Leaderboard v1 tasks (loaded by lm-eval's `!function`, resolved next to the
base configs in this folder). Each is a copy of lm-eval 0.4.13's built-in helper of the same task
(lm_eval/tasks/{hellaswag,truthfulqa,winogrande}/), so prompts and scores match lm-eval's own tasks;
the one change is the name of TruthfulQA's metric (`mc2`, lm-eval calls it `acc`)."""

from __future__ import annotations

import re

import numpy as np


# --------------------------------------------------------------------------- HellaSwag (hellaswag/utils.py)


def preprocess(text: str) -> str:
    text = text.strip()
    # NOTE: Brackets are artifacts of the WikiHow dataset portion of HellaSwag.
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def _hellaswag_doc(doc: dict) -> dict:
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return {
        "query": preprocess(doc["activity_label"] + ": " + ctx),
        "choices": [preprocess(ending) for ending in doc["endings"]],
        "gold": int(doc["label"]),
    }


def hellaswag_process_docs(dataset):
    """lm-eval's hellaswag `process_docs`: adds query, choices, gold to each hub-schema row."""
    return dataset.map(_hellaswag_doc)


# --------------------------------------------------------------------------- TruthfulQA (truthfulqa/utils.py)


def truthfulqa_process_results_mc2(doc: dict, results) -> dict:
    """MC2: the normalised probability mass of the true answers among all mc2 answers."""
    ll, _ = zip(*results)
    ll = np.array(ll)
    # Convert log-likelihoods to probabilities.
    probs = np.exp(ll)
    # Normalize probabilities.
    probs_norm = probs / np.sum(probs)
    labels = np.array(doc["mc2_targets"]["labels"])
    # Compute the normalized probability mass for the correct answer.
    pm_true = np.sum(probs_norm[labels == 1])
    return {"mc2": float(pm_true)}


# --------------------------------------------------------------------------- WinoGrande (preprocess_winogrande.py)
# Partial scoring: the contexts are the sentence up to the blank with each option filled in
# (doc_to_choice; doc_to_text gives the index of the right one, for few-shot examples), and the
# scored continuation is the rest of the sentence after the blank (doc_to_target).


def winogrande_doc_to_text(doc: dict) -> int:
    answer_to_num = {"1": 0, "2": 1}
    return answer_to_num[doc["answer"]]


def winogrande_doc_to_target(doc: dict) -> str:
    idx = doc["sentence"].index("_") + 1
    return doc["sentence"][idx:].strip()


def winogrande_doc_to_choice(doc: dict) -> list[str]:
    idx = doc["sentence"].index("_")
    options = [doc["option1"], doc["option2"]]
    return [doc["sentence"][:idx] + opt for opt in options]
