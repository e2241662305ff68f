"""Pretraining (rules/pretrain.smk): the tiny base model's tokenizer and Llama, trained from scratch on the data's corpus."""
