"""Supervised fine-tuning (rules/train.smk): the HF Trainer with an objective plugged in, the SFT run, multi-GPU launch."""
