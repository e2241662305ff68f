"""Evaluation (rules/evaluate.smk): code in a sandbox, math, diversity, forgetting with lm-eval, model statistics."""
