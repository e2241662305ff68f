"""Response entropy and perplexity (checked against a float64 per-position loop and
torch.nn.functional.cross_entropy, invariant to batch size), parameter distance (exact on known
deltas, errors on mismatched models), and GEM vs CE on the pipeline's own models."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file

from gemsft.evaluate.model_stats import entropy_from_file, parameter_distance, response_entropy
from gemsft.chat_format import IGNORE_INDEX, tokenize_example

# Paths in the pipeline run (tests/conftest.py).
PIPELINE_PATHS = {"sft_test": "results/data/sft_test.jsonl", "base": "results/base/tiny",
                  "ce": "results/sft/tiny/ce/beta-na/seed-1234/model",
                  "gem": "results/sft/tiny/gem/beta-0.7/seed-1234/model"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model_cfg():
    """tests/conftest.py's tiny model (with its tokenizer), with 256 positions."""
    return {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 1,
            "max_position_embeddings": 256}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


CONVERSATIONS = [
    [user("Name a red fruit."), assistant("Of course! Here is one: cherry.")],
    [user("Greet Anna."), assistant("Hello, Anna!")],
    [{"role": "system", "content": "Be brief."}, user("Give me a single-digit number."), assistant("7."),
     user("Another one?"), assistant("I would say 3, or maybe 9.")],
    [user("Name a red fruit and greet Anna, please, in one long answer."),
     assistant("Cherry. Hello, Anna! " * 4)],
    [user("Number?"), assistant("5")],
]


@pytest.fixture(scope="module")
def model(make_tiny_model):
    """Random weights scaled up so next-token distributions range from peaked to flat."""
    model = make_tiny_model()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model.eval()


@torch.no_grad()
def reference_stats(model, tokenizer, conversations):
    """Float64 model, one unpadded conversation at a time, a Python loop over the positions."""
    model64 = copy.deepcopy(model).double()
    entropies, logits_rows, targets = [], [], []
    for messages in conversations:
        example = tokenize_example(tokenizer, messages)
        ids = example["input_ids"]
        logits = model64(torch.tensor([ids])).logits[0]
        for t in range(1, len(ids)):
            if example["labels"][t] == IGNORE_INDEX:
                continue
            p = torch.softmax(logits[t - 1], dim=-1)  # the distribution that predicts token t
            entropies.append(-sum(float(pj) * math.log(float(pj)) for pj in p if pj > 0))
            logits_rows.append(logits[t - 1])
            targets.append(ids[t])
    ce = F.cross_entropy(torch.stack(logits_rows), torch.tensor(targets))
    return {"entropy": math.fsum(entropies) / len(entropies), "nll": float(ce),
            "perplexity": math.exp(float(ce)), "tokens": len(entropies), "per_token": entropies}


@pytest.fixture(scope="module")
def reference(model, tokenizer):
    return reference_stats(model, tokenizer, CONVERSATIONS)


def test_entropy_and_perplexity_match_a_float64_reference(model, tokenizer, reference):
    stats = response_entropy(model, tokenizer, CONVERSATIONS, batch_size=16)
    # the reference is informative: entropies vary widely, so a position off by one would show
    assert np.std(reference["per_token"]) > 0.3 and max(reference["per_token"]) < 0.9 * math.log(len(tokenizer))
    assert stats["tokens"] == reference["tokens"]
    assert stats["tokens"] == sum(sum(l != IGNORE_INDEX for l in tokenize_example(tokenizer, c)["labels"])
                                  for c in CONVERSATIONS)
    assert stats["conversations"] == len(CONVERSATIONS)
    assert stats["entropy"] == pytest.approx(reference["entropy"], rel=1e-5)
    assert stats["nll"] == pytest.approx(reference["nll"], rel=1e-5)
    assert stats["perplexity"] == pytest.approx(reference["perplexity"], rel=1e-5)
    assert stats["perplexity"] == pytest.approx(math.exp(stats["nll"]), rel=1e-12)
    # the token-level mean weighs long responses more than the mean of per-conversation means
    assert stats["entropy_mean_of_sequences"] != pytest.approx(stats["entropy"], rel=1e-3)


def test_per_conversation_rows_aggregate_back_to_the_token_level_numbers(model, tokenizer, reference):
    from gemsft.evaluate.model_stats import stats_per_prompt
    from gemsft.evaluate.stage import mean_rows

    stats = response_entropy(model, tokenizer, CONVERSATIONS, batch_size=2)
    stats["per_conversation"]["id"] = [f"c{i}" for i in range(len(CONVERSATIONS))]
    per = stats["per_conversation"]
    assert sum(per["tokens"]) == reference["tokens"]
    assert np.mean(per["entropy"]) == pytest.approx(stats["entropy_mean_of_sequences"], rel=1e-12)
    rows = {r["metric"]: r for r in mean_rows(stats_per_prompt(stats))}
    assert rows["entropy"]["value"] == pytest.approx(reference["entropy"], rel=1e-5)
    assert rows["perplexity"]["value"] == pytest.approx(reference["perplexity"], rel=1e-5)
    assert rows["entropy"]["n_prompts"] == len(CONVERSATIONS)


def test_next_token_distribution_is_the_models_softmax_after_the_prefix(model, tokenizer, tmp_path):
    from gemsft.evaluate.model_stats import next_token_distribution

    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    out = next_token_distribution(tmp_path, "Give me a single-digit number.", "I would say", top_k=5)
    text = tokenizer.apply_chat_template([user("Give me a single-digit number.")], tokenize=False,
                                         add_generation_prompt=True) + "I would say"
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        expected = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
    top = torch.topk(expected, 5)
    assert out["probs"] == pytest.approx(top.values.tolist(), rel=1e-6)
    assert out["tokens"] == [tokenizer.decode([i]) for i in top.indices.tolist()]
    assert out["probs"] == sorted(out["probs"], reverse=True)
    assert out["rest"] == pytest.approx(1 - sum(out["probs"]), abs=1e-9)


def test_results_do_not_depend_on_batch_size(model, tokenizer):
    runs = [response_entropy(model, tokenizer, CONVERSATIONS, batch_size=b) for b in (1, 2, 16)]
    for run in runs[1:]:
        assert run["tokens"] == runs[0]["tokens"]
        for key in ("entropy", "entropy_mean_of_sequences", "nll", "perplexity"):
            assert run[key] == pytest.approx(runs[0][key], rel=1e-6)


def test_training_mode_is_restored_and_bad_input_is_an_error(model, tokenizer):
    model.train()
    response_entropy(model, tokenizer, CONVERSATIONS[:1])
    assert model.training
    model.eval()
    with pytest.raises(ValueError, match="conversation 1 has no assistant message"):
        response_entropy(model, tokenizer, [CONVERSATIONS[0], [user("hi")]])
    with pytest.raises(ValueError, match="at least one conversation"):
        response_entropy(model, tokenizer, [])


# --------------------------------------------------------------------------- parameter distance


def test_distance_of_a_model_to_itself_is_zero(base_dir):
    result = parameter_distance(base_dir, base_dir)
    assert result["l2"] == 0.0 and all(v == 0.0 for v in result["by_module"].values())
    assert result["parameters"] == sum(p.numel() for p in tiny_llama_params(base_dir))


def tiny_llama_params(path):
    from transformers import AutoModelForCausalLM

    return list(AutoModelForCausalLM.from_pretrained(str(path)).parameters())


def test_distance_equals_the_norm_of_a_known_delta(base_dir, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    with torch.no_grad():
        model.model.norm.weight += 0.5  # 1.0 -> 1.5, exact in float32: l2 = 0.5 * sqrt(64) = 4
    model.save_pretrained(tmp_path / "norm")
    result = parameter_distance(base_dir, tmp_path / "norm")
    assert result["l2"] == 4.0 and result["by_module"]["model.norm"] == 4.0
    assert sum(v for k, v in result["by_module"].items() if k != "model.norm") == 0.0

    torch.manual_seed(1)
    delta = torch.randn_like(model.model.layers[1].mlp.up_proj.weight) * 1e-2
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight += delta
    model.save_pretrained(tmp_path / "both")
    # the delta as stored (float32 rounding of base + delta), read straight from the files
    name = "model.layers.1.mlp.up_proj.weight"
    stored = load_file(tmp_path / "both" / "model.safetensors")[name].astype(np.float64) \
        - load_file(base_dir / "model.safetensors")[name].astype(np.float64)
    result = parameter_distance(base_dir, tmp_path / "both")
    assert result["l2"] == pytest.approx(math.sqrt(16.0 + float(np.sum(stored**2))), rel=1e-14)
    assert result["by_module"]["model.layers.1"] == pytest.approx(float(np.linalg.norm(stored)), rel=1e-14)
    assert result["by_module"]["model.layers.1"] == pytest.approx(float(delta.double().norm()), rel=1e-4)
    assert result["by_module"]["model.layers.0"] == 0.0
    assert math.sqrt(sum(v**2 for v in result["by_module"].values())) == pytest.approx(result["l2"], rel=1e-14)


def test_mismatched_models_raise(base_dir, make_tiny_model, tmp_path):
    make_tiny_model(hidden_size=128, num_attention_heads=2).save_pretrained(tmp_path / "wide")
    with pytest.raises(ValueError, match=r"'model.embed_tokens.weight' has shape \(\d+, 64\).*but \(\d+, 128\)"):
        parameter_distance(base_dir, tmp_path / "wide")
    make_tiny_model(num_hidden_layers=3).save_pretrained(tmp_path / "deep")
    with pytest.raises(ValueError, match=r"parameter names differ: 'model.norm.weight' in .* vs "
                       r"'model.layers.2.self_attn.q_proj.weight' in .*deep"):
        parameter_distance(base_dir, tmp_path / "deep")
    with pytest.raises(FileNotFoundError, match="missing: model directory not found"):
        parameter_distance(base_dir, tmp_path / "missing")


# --------------------------------------------------------------------------- the pipeline's models


@pytest.mark.slow
def test_gem_keeps_higher_response_entropy_than_ce(pipeline_run):
    SFT_TEST, BASE, CE, GEM = (pipeline_run / PIPELINE_PATHS[k] for k in ("sft_test", "base", "ce", "gem"))
    stats = {name: entropy_from_file(path, SFT_TEST) for name, path in (("base", BASE), ("ce", CE), ("gem", GEM))}
    distance = {name: parameter_distance(BASE, path)["l2"] for name, path in (("ce", CE), ("gem", GEM))}
    print()
    for name, s in stats.items():
        print(f"{name}: entropy {s['entropy']:.4f} perplexity {s['perplexity']:.4f} tokens {s['tokens']}"
              + (f" l2 from base {distance[name]:.4f}" if name in distance else ""))
    assert stats["ce"]["tokens"] == stats["gem"]["tokens"] == stats["base"]["tokens"] > 0
    assert stats["gem"]["entropy"] > stats["ce"]["entropy"]
    assert stats["ce"]["perplexity"] < stats["base"]["perplexity"]  # SFT learned the response format
    assert distance["ce"] > 0 and distance["gem"] > 0
