"""The tiny Llama-architecture base model of the embedded world."""

from __future__ import annotations

from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM


def tiny_llama(model_cfg: dict, tokenizer) -> LlamaForCausalLM:
    """A randomly initialised LlamaForCausalLM sized by the config's `model` section.

    head_dim = hidden_size / num_attention_heads must be 64 (or another size vLLM's CPU attention
    supports) so the same model samples through vLLM.
    """
    hidden, heads = model_cfg["hidden_size"], model_cfg["num_attention_heads"]
    if hidden % heads:
        raise ValueError(f"model.hidden_size ({hidden}) must be divisible by model.num_attention_heads ({heads})")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=model_cfg["intermediate_size"],
        num_hidden_layers=model_cfg["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=model_cfg.get("num_key_value_heads", heads),
        max_position_embeddings=model_cfg["max_position_embeddings"],
        tie_word_embeddings=model_cfg.get("tie_word_embeddings", True),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
