"""Sampling (rules/sample.smk): what each model is asked (the plan) and the generation backends (HF, vLLM)."""
