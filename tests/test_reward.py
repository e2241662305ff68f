"""Reward model and best-of-N: closed-form BoN against brute-force enumeration and Monte Carlo,
batching/padding invariance of scoring, Bradley-Terry training on a learnable toy preference set and
on the world's preferences (each judged better than chance by a binomial interval, which a reward model
trained on shuffled labels does not reach), and the errors for bad inputs."""

from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
import pytest
import torch
from scipy.stats import binomtest
from transformers import AutoModelForSequenceClassification, LlamaForSequenceClassification

from gemsft import files
from gemsft.score.best_of_n import expected_best_of_n, expected_win_rate, first_n_best, first_n_win_rate
from gemsft.score.reward_model import load_reward_model, score, split_by_prompt, train_reward_model


WORDS = ["red", "blue", "green", "cat", "dog", "fish", "runs", "sits", "jumps", "the", "a", "big", "small",
         "happy", "sad", "today", "now", "here", "there", "very"]
KEYWORD = "banana"
CORPUS = [" ".join(random.Random(i).choices(WORDS + [KEYWORD], k=12)) for i in range(200)] + [
    "Question 1: describe the cat. Answer: the cat sits."] * 10

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# tests/conftest.py's tokenizer and base_dir (a tiny causal LM, no reward head), with the toy
# preference set's keyword in the tokenizer's training text.
@pytest.fixture(scope="module")
def tokenizer_corpus():
    return CORPUS


@pytest.fixture(scope="module")
def tokenizer_vocab_size():
    return 320


@pytest.fixture(scope="module")
def reward_dir(tokenizer, base_dir, tmp_path_factory):
    """A randomly initialised LlamaForSequenceClassification with one output, saved like a hub RM."""
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)  # make rewards vary visibly
    path = tmp_path_factory.mktemp("rm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# --------------------------------------------------------------------------- best-of-N, closed form

def brute_force(rewards, N, f):
    subsets = list(itertools.combinations(rewards, N))
    return sum(f(max(s)) for s in subsets) / len(subsets)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


TIED = [0.3, -1.2, 0.3, 2.0, 0.3, -1.2, 0.9, 2.0]  # n = 8 with ties, including at the maximum


@pytest.mark.parametrize("N", range(1, 9))
def test_bon_matches_enumeration_of_all_subsets_with_ties(N):
    assert expected_best_of_n(TIED, N) == pytest.approx(brute_force(TIED, N, lambda m: m), abs=1e-12)
    for ref in (0.3, 0.0, 2.0, -5.0):  # refs equal to tied values exercise the hard tie rule
        soft = brute_force(TIED, N, lambda m: sigmoid(m - ref))
        hard = brute_force(TIED, N, lambda m: 1.0 if m > ref else 0.5 if m == ref else 0.0)
        assert expected_win_rate(TIED, ref, N) == pytest.approx(soft, abs=1e-12)
        assert expected_win_rate(TIED, ref, N, hard=True) == pytest.approx(hard, abs=1e-12)


def test_bon_endpoints_and_order_invariance():
    rewards = np.random.default_rng(0).normal(size=32)
    assert expected_best_of_n(rewards, 1) == pytest.approx(rewards.mean(), abs=1e-12)
    assert expected_best_of_n(rewards, 32) == pytest.approx(rewards.max(), abs=1e-12)
    assert expected_win_rate(rewards, 0.2, 1) == pytest.approx(np.mean([sigmoid(r - 0.2) for r in rewards]), abs=1e-12)
    assert expected_win_rate(rewards, 0.2, 32, hard=True) == 1.0 * (rewards.max() > 0.2)
    shuffled = np.random.default_rng(1).permutation(rewards)
    assert expected_best_of_n(shuffled, 7) == pytest.approx(expected_best_of_n(rewards, 7), abs=1e-12)
    curve = [expected_best_of_n(rewards, N) for N in range(1, 33)]
    assert all(b >= a - 1e-12 for a, b in zip(curve, curve[1:]))  # more samples never hurt


@pytest.mark.parametrize("N", [2, 8, 16])
def test_bon_agrees_with_monte_carlo(N):
    rng = np.random.default_rng(42)
    rewards = rng.normal(size=32)
    draws = 20000
    maxima = np.array([rewards[rng.choice(32, N, replace=False)].max() for _ in range(draws)])
    wins = 1 / (1 + np.exp(-(maxima - 0.5)))
    for exact, sample in ((expected_best_of_n(rewards, N), maxima), (expected_win_rate(rewards, 0.5, N), wins)):
        se = sample.std(ddof=1) / math.sqrt(draws)
        assert abs(exact - sample.mean()) < 4 * se + 1e-12


def test_bon_is_stable_for_large_n():
    # For rewards 1..n, E[max of a uniform size-N subset] = N (n + 1) / (N + 1).
    n = 200
    rewards = np.arange(1, n + 1, dtype=float)
    for N in (1, 2, 50, 100, 199, 200):
        assert expected_best_of_n(rewards, N) == pytest.approx(N * (n + 1) / (N + 1), rel=1e-12)
        assert 0.0 <= expected_win_rate(rewards, 100.5, N) <= 1.0


def test_first_n_variants_use_the_first_samples():
    rewards = [0.1, 3.0, -2.0, 5.0, 1.0]
    assert [first_n_best(rewards, N) for N in range(1, 6)] == [0.1, 3.0, 3.0, 5.0, 5.0]
    assert first_n_win_rate(rewards, 1.0, 2) == pytest.approx(math.exp(3.0) / (math.exp(3.0) + math.exp(1.0)))
    assert first_n_win_rate(rewards, 0.1, 1, hard=True) == 0.5
    assert first_n_win_rate(rewards, 3.0, 3, hard=True) == 0.5
    assert first_n_win_rate(rewards, 3.0, 4, hard=True) == 1.0
    assert first_n_win_rate(rewards, 4.0, 3, hard=True) == 0.0


@pytest.mark.parametrize("N", [0, 6, -1, 2.5, True])
def test_bon_rejects_n_out_of_range(N):
    for call in (lambda: expected_best_of_n([1.0] * 5, N), lambda: expected_win_rate([1.0] * 5, 0.0, N),
                 lambda: first_n_best([1.0] * 5, N), lambda: first_n_win_rate([1.0] * 5, 0.0, N)):
        with pytest.raises(ValueError, match=rf"N={N!r}.*n=5"):
            call()


def test_bon_rejects_bad_reward_arrays():
    with pytest.raises(ValueError, match="1-D"):
        expected_best_of_n(np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="NaN"):
        expected_best_of_n([1.0, float("nan")], 1)


# --------------------------------------------------------------------------- scoring

PROMPTS = ["the cat", "describe the big happy dog that runs there today", "a", "fish", "red blue green cat dog"]
RESPONSES = ["sits here", "the dog runs", "banana", "the small fish jumps very very very much now", "ok"]


def test_score_is_invariant_to_batching_and_padding(reward_dir):
    model, tok = load_reward_model(reward_dir)
    assert isinstance(model, LlamaForSequenceClassification) and not model.training
    batched = score(model, tok, PROMPTS, RESPONSES, batch_size=64)
    assert batched.shape == (len(PROMPTS),) and batched.dtype == np.float64
    assert np.std(batched) > 1e-3  # the head is not degenerate
    singles = np.array([score(model, tok, [p], [r], batch_size=1)[0] for p, r in zip(PROMPTS, RESPONSES)])
    np.testing.assert_allclose(batched, singles, atol=1e-5, rtol=0)
    np.testing.assert_allclose(score(model, tok, PROMPTS, RESPONSES, batch_size=2), singles, atol=1e-5, rtol=0)
    # The same pair padded next to a much longer one scores the same.
    padded = score(model, tok, [PROMPTS[2], " ".join(WORDS * 3)], [RESPONSES[2], "x"], batch_size=2)[0]
    assert padded == pytest.approx(singles[2], abs=1e-5)
    # Independent reference: the HF model's own pooling on one unpadded conversation.
    ids = tok.apply_chat_template([{"role": "user", "content": PROMPTS[1]}, {"role": "assistant", "content": RESPONSES[1]}],
                                  tokenize=True, return_dict=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert model(input_ids=ids).logits[0, 0].item() == pytest.approx(singles[1], abs=1e-5)


def test_score_pools_correctly_when_pad_is_eos(reward_dir):
    """HF pools at the rightmost token != pad_token_id; with pad == eos that would skip a trailing eos.
    Pooling by the attention mask does not care which token pads."""
    model, tok = load_reward_model(reward_dir)
    tok.chat_template = tok.chat_template.replace("{{ eos_token }}{% endgeneration %}\n", "{{ eos_token }}{% endgeneration %}")
    ids = tok.apply_chat_template([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                                  tokenize=True, return_dict=True)["input_ids"]
    assert ids[-1] == tok.eos_token_id  # conversations now end with eos, as Llama-3's do
    reference = score(model, tok, PROMPTS, RESPONSES, batch_size=1)
    tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.eos_token_id
    np.testing.assert_allclose(score(model, tok, PROMPTS, RESPONSES, batch_size=64), reference, atol=1e-5, rtol=0)


def test_score_checks_lengths_and_truncates_from_the_left(reward_dir):
    model, tok = load_reward_model(reward_dir)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        score(model, tok, ["a", "b"], ["c"])
    long_prompt = " ".join(WORDS * 10)
    full = score(model, tok, [long_prompt], ["ok"], max_length=None)
    cut = score(model, tok, [long_prompt], ["ok"], max_length=16)
    assert np.isfinite(cut).all() and cut[0] != pytest.approx(full[0], abs=1e-6)


def test_loading_a_causal_lm_is_a_clear_error(base_dir):
    with pytest.raises(ValueError, match="has no reward head \\(score weights missing"):
        load_reward_model(base_dir)


def test_loading_a_multi_label_classifier_is_an_error(base_dir, tmp_path):
    AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=2).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="single output.*num_labels=2"):
        load_reward_model(tmp_path)


# --------------------------------------------------------------------------- training

CHANCE = 0.5  # a reward model that learnt nothing orders a pair either way


def accuracy_interval(correct: int, pairs: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a pair accuracy of correct / pairs. It treats the pairs
    as independent; pairs that share a prompt are not quite, so the bar below is a little lenient."""
    ci = binomtest(correct, pairs).proportion_ci(level, method="exact")
    return ci.low, ci.high


def beats_chance(correct: int, pairs: int) -> bool:
    """The reward model learnt the preference: its 95% interval lies above chance."""
    return accuracy_interval(correct, pairs)[0] > CHANCE


def heldout_correct(metrics: dict, family: str | None = None) -> tuple[int, int]:
    """(correct, pairs) on the held-out prompts, from the per-prompt counts (of one family)."""
    prompts = [p for p in metrics["heldout"]["per_prompt"] if family is None or p["family"] == family]
    return sum(p["correct"] for p in prompts), sum(p["pairs"] for p in prompts)


def test_the_bar_is_a_binomial_interval_above_chance():
    # Clopper-Pearson's lower end is above 1/2 exactly when that many correct pairs are rarer than 2.5%
    # for a coin: of 48 held-out pairs (the toy set's), 31 (0.65) could still be chance, 32 (0.67) not.
    def coin_tail(correct, pairs):
        return sum(math.comb(pairs, i) for i in range(correct, pairs + 1)) / 2 ** pairs

    assert [beats_chance(c, 48) for c in range(49)] == [coin_tail(c, 48) < 0.025 for c in range(49)]
    assert not beats_chance(31, 48) and beats_chance(32, 48)
    # And the interval agrees with the normal approximation where that is good.
    half = 1.96 * math.sqrt(0.6 * 0.4 / 1000)
    assert accuracy_interval(600, 1000) == pytest.approx((0.6 - half, 0.6 + half), abs=2e-3)


def keyword_preferences(n_prompts=120, pairs_per_prompt=2, seed=0):
    """Chosen mentions the keyword somewhere, rejected does not; otherwise alike (same length)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_prompts):
        prompt = " ".join(rng.choices(WORDS, k=rng.randint(2, 5)))
        for _ in range(pairs_per_prompt):
            words = rng.choices(WORDS, k=rng.randint(3, 7))
            chosen = list(words)
            chosen[rng.randrange(len(words))] = KEYWORD
            rows.append({"id": f"toy/{i}", "family": "toy", "prompt": prompt, "chosen": " ".join(chosen),
                         "rejected": " ".join(words)})
    return rows


TOY_CFG = {"epochs": 4, "batch_size": 16, "learning_rate": 2e-3, "seed": 7, "heldout_fraction": 0.2, "max_length": 64}


def test_train_reward_model_learns_a_keyword_preference(base_dir, tmp_path):
    data = tmp_path / "prefs.jsonl"
    rows = keyword_preferences()
    files.write_jsonl(data, rows)
    metrics = train_reward_model(base_dir, data, tmp_path / "rm", tmp_path / "metrics.json", TOY_CFG)
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    for key in ("heldout_accuracy", "train_accuracy", "heldout", "train", "history", "train_seconds", "heldout_ids"):
        assert key in metrics
    assert metrics["heldout_accuracy"] >= 0.9, metrics
    assert metrics["train_accuracy"] >= 0.9, metrics
    assert beats_chance(*heldout_correct(metrics)), metrics["heldout"]

    # Held-out prompts are whole ids, disjoint from training ids, ~20% of them.
    heldout_ids = set(metrics["heldout_ids"])
    train_ids = {r["id"] for r in rows} - heldout_ids
    assert heldout_ids and train_ids and not heldout_ids & train_ids
    assert len(heldout_ids) == round(0.2 * 120)
    assert metrics["heldout"]["pairs"] == sum(r["id"] in heldout_ids for r in rows)
    assert metrics["train"]["pairs"] + metrics["heldout"]["pairs"] == len(rows)

    # The saved model reloads as a reward model and reproduces the held-out accuracy.
    model, tok = load_reward_model(tmp_path / "rm")
    assert model.config.architectures == ["LlamaForSequenceClassification"]
    held = [r for r in rows if r["id"] in heldout_ids]
    chosen = score(model, tok, [r["prompt"] for r in held], [r["chosen"] for r in held])
    rejected = score(model, tok, [r["prompt"] for r in held], [r["rejected"] for r in held])
    assert np.mean(chosen > rejected) == pytest.approx(metrics["heldout_accuracy"])


def test_a_reward_model_trained_on_shuffled_labels_does_not_beat_chance(base_dir, tmp_path):
    """The negative control of the bar: the same training on the keyword set with each pair's chosen
    and rejected swapped by a fair coin (held-out pairs too) has nothing to learn, and its held-out
    accuracy must not pass as learnt."""
    coin = random.Random(11)
    rows = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} if coin.random() < 0.5 else r
            for r in keyword_preferences()]
    data = tmp_path / "prefs.jsonl"
    files.write_jsonl(data, rows)
    metrics = train_reward_model(base_dir, data, tmp_path / "rm", tmp_path / "metrics.json", TOY_CFG)
    correct, pairs = heldout_correct(metrics)
    assert pairs == 48 and correct / pairs == pytest.approx(metrics["heldout_accuracy"])
    assert not beats_chance(correct, pairs), (correct, pairs)


def test_split_by_prompt_is_grouped_seeded_and_per_family():
    rows = keyword_preferences(40, 3) + [{**r, "id": "b" + r["id"], "family": "other"} for r in keyword_preferences(10, 1)]
    train, held = split_by_prompt(rows, 0.25, seed=3)
    assert not {r["id"] for r in train} & {r["id"] for r in held}
    assert len(train) + len(held) == len(rows)
    held_ids = {r["id"] for r in held}
    assert sum(i.startswith("toy") for i in held_ids) == 10 and sum(i.startswith("b") for i in held_ids) == 2
    assert split_by_prompt(rows, 0.25, seed=3) == (train, held)
    assert split_by_prompt(rows, 0.25, seed=4) != (train, held)


def test_training_is_deterministic(base_dir, tmp_path):
    data = tmp_path / "prefs.jsonl"
    files.write_jsonl(data, keyword_preferences(12, 2))
    cfg = {**TOY_CFG, "epochs": 1, "batch_size": 4}
    first = train_reward_model(base_dir, data, tmp_path / "a", tmp_path / "a.json", cfg)
    second = train_reward_model(base_dir, data, tmp_path / "b", tmp_path / "b.json", cfg)
    for key in ("history", "heldout", "train", "heldout_ids"):
        assert first[key] == second[key]


def test_families_and_max_steps_restrict_training(base_dir, tmp_path):
    data = tmp_path / "prefs.jsonl"
    rows = keyword_preferences(10, 2) + [{**r, "id": "x" + r["id"], "family": "other"} for r in keyword_preferences(5, 1)]
    files.write_jsonl(data, rows)
    metrics = train_reward_model(base_dir, data, tmp_path / "rm", tmp_path / "m.json",
                                 {**TOY_CFG, "families": ["toy"], "max_steps": 3, "batch_size": 2})
    assert metrics["steps"] == 3 and len(metrics["history"]) == 1
    assert metrics["train"]["pairs"] + metrics["heldout"]["pairs"] == 20
    assert set(metrics["heldout"]["per_family_accuracy"]) == {"toy"}


@pytest.mark.parametrize("rows, message", [
    ([], "empty"),
    ([{"id": "a", "prompt": "p", "chosen": "c", "rejected": "r"}, {"id": "b", "prompt": "p", "rejected": "r"}],
     "row 1 lacks field 'chosen'"),
    ([{"prompt": "p", "chosen": "c", "rejected": "r"}], "row 0 lacks field 'id'"),
    ([{"id": "a", "prompt": 3, "chosen": "c", "rejected": "r"}], "row 0 lacks field 'prompt'"),
    ([{"id": "a", "prompt": "p", "chosen": "c", "rejected": ""}], "row 0 lacks field 'rejected'"),
])
def test_malformed_preferences_name_the_row_and_field(base_dir, tmp_path, rows, message):
    data = tmp_path / "prefs.jsonl"
    files.write_jsonl(data, rows)
    with pytest.raises(ValueError, match=message):
        train_reward_model(base_dir, data, tmp_path / "rm", tmp_path / "m.json", TOY_CFG)
    assert not (tmp_path / "rm").exists() and not (tmp_path / "m.json").exists()


# --------------------------------------------------------------------------- the world's preferences

@pytest.mark.slow
def test_world_reward_model_on_heldout_prompts(pipeline_run):
    """The DAG's own Bradley-Terry reward model (reward_model rule: the tiny base, the world's chat and
    code pairs, config.yaml's 2 epochs, batch 32, lr 1e-3), judged on the prompts it held out.

    The claim is that it learnt the world's preferences: its held-out pair accuracy is better than
    chance, decided by the 95% Clopper-Pearson interval (its lower end above 0.5; `beats_chance`,
    which a reward model trained on shuffled labels does not pass). Measured on ci.yaml's run at the
    world of fd0693c: 38 of 48 held-out pairs (0.79, interval 0.65-0.90; chat 20/28 = 0.71, 0.51-0.87;
    code 18/20 = 0.90, 0.68-0.99), train 0.80 in 26 steps; the same training on the world's pairs with
    chosen and rejected swapped by a fair coin gave 22/48 (0.46, interval 0.31-0.61) and fails. The
    world before it gave 35/48 (0.73, 0.58-0.85; chat 16/28 = 0.57, 0.37-0.76).

    History (session 1 study, 10% of each family's prompts held out): 40 steps gave held-out 0.55
    (chat 0.56, code 1.00, math 0.46); 2 epochs, batch 32, lr 1e-3 gave 0.66 (seed 0) and 0.58 (seed
    1234); 3-6 epochs, lr 1e-4..5e-4, batch 8-16 or the SFT model as the base gave 0.58-0.64. Code
    preferences are learned at once; math ("is a + b = c right?") stays near chance on held-out
    prompts while train accuracy climbs, which is why the DAG trains on chat and code only. Chat
    generalises weakly to unseen prompts (slots whose every paraphrase is held out need pretraining
    knowledge): its 28 pairs leave a wide interval, so chat alone is not asserted above chance; the
    tables and figures print it with its interval beside every win rate the reward model scored. An
    earlier bar of 0.75 overall was reported as an expected failure, so it could never fail; it was a
    target, not what the test claims.
    """
    metrics = files.read_json(pipeline_run / "results/reward_model/tiny.metrics.json")
    held = metrics["heldout"]
    correct, pairs = heldout_correct(metrics)
    by_family = {family: heldout_correct(metrics, family) for family in held["per_family_accuracy"]}
    print(f"world RM: held-out pair accuracy {correct}/{pairs} = {correct / pairs:.3f}, 95% interval "
          f"{accuracy_interval(correct, pairs)}; per family "
          f"{ {f: (c, n, accuracy_interval(c, n)) for f, (c, n) in by_family.items()} } "
          f"{held['per_criterion_accuracy']}, train {metrics['train_accuracy']:.3f}, {metrics['steps']} steps")
    assert held["pairs"] == pairs >= 30 and set(held["per_family_accuracy"]) == {"chat", "code"}
    assert correct / pairs == pytest.approx(metrics["heldout_accuracy"])
    # Chat pairs are labelled by the world's oracle: acceptable vs not, and two acceptable answers by quality.
    assert set(held["per_criterion_accuracy"]) == {"acceptability", "quality"}
    assert beats_chance(correct, pairs), (correct, pairs, accuracy_interval(correct, pairs))
    assert held["per_family_accuracy"]["code"] >= 0.75, held
    assert metrics["train_accuracy"] > 0.55, metrics["train"]
