"""Best-of-N under the embedded world's oracle reward (issue 14): the estimators against brute-force
enumeration of every size-N subset, the chat-quality stage with a trained reward model (its held-out
accuracy beside the oracle's rows), real-data records without an oracle, and the beta-sweep table and
Figure 7(a) that show them. The world's qualities and preference labels are tested in test_world.py."""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from gemsft import files
from gemsft.data.world import build_world, chat
from gemsft.report import tables
from gemsft.report.figures import FigureData, draw_figure
from gemsft.report.figures.style import run_color
from gemsft.report.summary import SUMMARY_COLUMNS
from gemsft.score import best_of_n
from gemsft.score.chat_quality import REWARD_MODEL_ACCURACY, chat_quality, reward_model_rows, write_chat_quality
from gemsft.score.oracle import ORACLE_METRICS, RM_SELECTED_METRICS
from gemsft.score.reward_model import load_reward_model, score, train_reward_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"

U = chat.UNACCEPTABLE_QUALITY
RED = {"id": "chat/fruit/red/1", "kind": "fruit", "slot": "red", "prompt": "Tell me a fruit that is red.",
       "reference": "Of course! Here is one: cherry.", "acceptable": ["apple", "cherry", "raspberry", "strawberry", "tomato"],
       "quality": {"apple": 0.8, "cherry": -0.3, "raspberry": 0.1, "strawberry": 1.7, "tomato": -1.1}}
# (text, its true quality read off by hand, reward-model score); the scores tie twice, one tie between
# samples of different quality, and one sample ties the reference.
RED_SAMPLES = [("Of course! Here is one: apple.", 0.8, 0.5), ("Strawberry.", 1.7, -0.2),
               ("I would say banana.", U, 1.3), ("Of course! Here is one: cherry.", -0.3, 0.5),
               ("", U, -2.0), ("How about tomato?", -1.1, 1.3)]
ANNA = {"id": "chat/greet/Anna/0", "kind": "greet", "slot": "Anna", "prompt": "Greet Anna.",
        "reference": "Of course! Hello, Anna!", "acceptable": ["Hello", "Hi"], "quality": {"Hello": -0.5, "Hi": 0.4}}
ANNA_SAMPLES = [("Hi, Anna!", 0.4, 0.0), ("Hello, Ben!", U, 2.0), ("Hello, Anna!", -0.5, 1.0),
                ("Hi Anna, how are you?", 0.4, -1.0), ("Sure! Hello, Anna!", -0.5, 3.0), ("Hey.", U, 0.1)]
NS = [1, 2, 3, 6]


def sample_rows(pid: str, samples) -> list[dict]:
    return [{"prompt_id": pid, "sample_index": i, "text": text, "finish_reason": "stop"}
            for i, (text, _, _) in enumerate(samples)]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def hard(x: float) -> float:
    return 1.0 if x > 0 else 0.5 if x == 0 else 0.0


def brute_force(quality, rm, ref, N, first_n=False):
    """Every metric of one prompt at N from all size-N subsets (or the first N), in float64: the best by
    the oracle, and the reward model's pick (its tied maxima averaged) scored by the oracle."""
    subsets = [tuple(range(N))] if first_n else list(itertools.combinations(range(len(quality)), N))
    totals = np.zeros(6)
    for subset in subsets:
        best = max(quality[i] for i in subset)
        top = max(rm[i] for i in subset)
        picks = [quality[i] for i in subset if rm[i] == top]
        totals += [best, 100 * sigmoid(best - ref), 100 * hard(best - ref),
                   np.mean(picks), 100 * np.mean([sigmoid(q - ref) for q in picks]),
                   100 * np.mean([hard(q - ref) for q in picks])]
    return dict(zip(ORACLE_METRICS + RM_SELECTED_METRICS, totals / len(subsets)))


def value(rows, name, k=None, pid=None):
    (row,) = [r for r in rows if r["metric"] == name and r["k"] == k and (pid is None or r["prompt_id"] == pid)]
    return row["value"]


# --------------------------------------------------------------------------- estimators


@pytest.mark.parametrize("compat", [None, "paper_code"])
def test_oracle_rows_match_enumeration_of_all_subsets(compat):
    samples = sample_rows(RED["id"], RED_SAMPLES) + sample_rows(ANNA["id"], ANNA_SAMPLES)
    rewards = [rm for _, _, rm in RED_SAMPLES + ANNA_SAMPLES]
    ref_rewards = {RED["id"]: 0.0, ANNA["id"]: 0.0}
    rows, per_prompt = chat_quality([RED, ANNA], samples, rewards, ref_rewards, NS, compat=compat)
    for record, given in ((RED, RED_SAMPLES), (ANNA, ANNA_SAMPLES)):
        quality, rm = [q for _, q, _ in given], [r for _, _, r in given]
        ref = record["quality"]["cherry" if record is RED else "Hello"]
        for n in NS:
            expected = brute_force(quality, rm, ref, n, first_n=compat == "paper_code")
            for name, want in expected.items():
                assert value(per_prompt, name, n, record["id"]) == pytest.approx(want, abs=1e-12), (name, n)
    for name in ORACLE_METRICS + RM_SELECTED_METRICS:  # the stage's rows average the two prompts
        assert value(rows, name, 2) == pytest.approx(np.mean([value(per_prompt, name, 2, r["id"]) for r in (RED, ANNA)]))
    # The reward model's own metrics are still there, unchanged by the oracle.
    plain, _ = chat_quality([{k: v for k, v in r.items() if k != "quality"} for r in (RED, ANNA)], samples,
                            rewards, ref_rewards, NS, compat=compat)
    assert [r for r in rows if r["metric"] in ("bon_reward", "win_rate", "hard_win_rate")] == plain


def test_picking_by_the_oracle_beats_picking_by_the_reward_model():
    samples = sample_rows(RED["id"], RED_SAMPLES)
    rows, _ = chat_quality([RED], samples, [rm for _, _, rm in RED_SAMPLES], {RED["id"]: 0.0}, NS)
    # One sample is a random sample whoever picks; all six: the oracle takes strawberry (1.7), the
    # reward model banana or tomato (1.3 each), true quality (-4 - 1.1) / 2.
    mean = np.mean([q for _, q, _ in RED_SAMPLES])
    assert value(rows, "oracle_bon_reward", 1) == pytest.approx(mean)
    assert value(rows, "rm_selected_oracle_reward", 1) == pytest.approx(mean)
    assert value(rows, "oracle_bon_reward", 6) == pytest.approx(1.7)
    assert value(rows, "rm_selected_oracle_reward", 6) == pytest.approx((U - 1.1) / 2)
    for n in NS:
        assert value(rows, "oracle_bon_reward", n) >= value(rows, "rm_selected_oracle_reward", n) - 1e-12
        assert value(rows, "oracle_win_rate", n) >= value(rows, "rm_selected_oracle_win_rate", n) - 1e-9


def test_selected_estimator_checks_its_inputs():
    with pytest.raises(ValueError, match="3 selection scores but 2 values"):
        best_of_n.expected_selected([1.0, 2.0, 3.0], [0.0, 1.0], 2)
    with pytest.raises(ValueError, match="best-of-N needs N in 1..n"):
        best_of_n.expected_selected([1.0, 2.0], [0.0, 1.0], 3)
    with pytest.raises(ValueError, match="NaN"):
        best_of_n.first_n_selected([1.0, 2.0], [0.0, math.nan], 1)


# --------------------------------------------------------------------------- records without an oracle


def test_records_without_quality_get_no_oracle_rows_and_mixed_files_are_an_error():
    real = [{"id": "alpaca/0", "prompt": "Write a haiku.", "reference": "Leaves fall."},
            {"id": "alpaca/1", "prompt": "Name a planet.", "reference": "Mars."}]
    samples = sample_rows("alpaca/0", RED_SAMPLES[:2]) + sample_rows("alpaca/1", RED_SAMPLES[:2])
    rows, per_prompt = chat_quality(real, samples, [0.1, 0.2, 0.3, 0.4], {"alpaca/0": 0.0, "alpaca/1": 0.0}, [1, 2])
    assert {r["metric"] for r in rows} == {r["metric"] for r in per_prompt} == {"bon_reward", "win_rate", "hard_win_rate"}
    with pytest.raises(ValueError, match="chat record 'alpaca/1' has no 'quality' while other records"):
        chat_quality([RED, real[1]], sample_rows(RED["id"], RED_SAMPLES[:2]) + samples[2:], [0.1, 0.2, 0.3, 0.4],
                     {RED["id"]: 0.0, "alpaca/1": 0.0}, [1, 2])


def test_reward_model_rows_weight_prompts_by_pairs():
    metrics = {"heldout": {"per_prompt": [
        {"id": "chat/a", "family": "chat", "pairs": 4, "correct": 3},
        {"id": "chat/b", "family": "chat", "pairs": 2, "correct": 0},
        {"id": "code/c", "family": "code", "pairs": 4, "correct": 4}]}}
    rows = reward_model_rows(metrics)
    assert [(r["prompt_id"], r["value"], r["weight"]) for r in rows] == [("chat/a", 75.0, 4.0), ("chat/b", 0.0, 2.0)]
    assert {r["metric"] for r in rows} == {REWARD_MODEL_ACCURACY} and all(r["k"] is None for r in rows)
    with pytest.raises(ValueError, match="rm.json: no 'heldout.per_prompt' results"):
        reward_model_rows({"heldout": {"accuracy": 0.5}}, "rm.json")


# --------------------------------------------------------------------------- the stage end to end


@pytest.fixture(scope="module")
def world():
    with open(CONFIG, encoding="utf-8") as f:
        return build_world(copy.deepcopy(yaml.safe_load(f)["world"]))


@pytest.fixture(scope="module")
def trained_rm(world, base_dir, tmp_path_factory):
    """A reward model trained a few steps on the world's chat pairs of 30 prompts, and its metrics."""
    out = tmp_path_factory.mktemp("rm")
    chat_pairs = [p for p in world["preferences"] if p["family"] == "chat"]
    ids = list(dict.fromkeys(p["id"] for p in chat_pairs))[:30]
    files.write_jsonl(out / "prefs.jsonl", [p for p in chat_pairs if p["id"] in ids])
    cfg = {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "seed": 3, "heldout_fraction": 0.3, "max_length": 64,
           "max_steps": 3}
    metrics = train_reward_model(base_dir, out / "prefs.jsonl", out / "model", out / "metrics.json", cfg)
    return out, metrics


def test_reward_model_metrics_report_held_out_prompts_and_criteria(trained_rm):
    out, metrics = trained_rm
    held = metrics["heldout"]
    pairs = [p for p in files.read_jsonl(out / "prefs.jsonl") if p["id"] in set(metrics["heldout_ids"])]
    model, tokenizer = load_reward_model(out / "model")
    # Scored in one call as training's evaluation does (same batches: a margin this close to 0 after
    # three steps must not flip with the batching).
    prompts = [p["prompt"] for p in pairs]
    rewards = score(model, tokenizer, prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs],
                    batch_size=64, max_length=64)
    margin = rewards[:len(pairs)] - rewards[len(pairs):]
    expected = {}
    for pair, m in zip(pairs, margin):
        entry = expected.setdefault(pair["id"], {"id": pair["id"], "family": "chat", "pairs": 0, "correct": 0})
        entry["pairs"] += 1
        entry["correct"] += int(m > 0)
    assert sorted(held["per_prompt"], key=lambda p: p["id"]) == sorted(expected.values(), key=lambda p: p["id"])
    for criterion in (chat.ACCEPTABILITY, chat.QUALITY):
        right = [m > 0 for p, m in zip(pairs, margin) if p["criterion"] == criterion]
        assert held["per_criterion_accuracy"][criterion] == pytest.approx(np.mean(right))
    assert "per_prompt" not in metrics["train"]


def test_chat_quality_stage_reports_oracle_and_reward_model_accuracy(world, trained_rm, tmp_path):
    out, metrics = trained_rm
    records = world["eval_chat"][:3]
    samples = []
    for record in records:
        texts = [chat.SFT_ENTITY_VOICE.format(a=key) if record["kind"] != "greet" else f"{key}, {record['slot']}!"
                 for key in record["acceptable"][:3]] + ["I do not know."]
        samples += [{"prompt_id": record["id"], "sample_index": i, "text": t, "finish_reason": "stop"}
                    for i, t in enumerate(texts)]
    stage_path = tmp_path / "chat_quality.json"
    write_chat_quality(records, samples, out / "model", tmp_path / "scores.jsonl", stage_path, {"model": "tiny"}, {},
                       [1, 2, 4], batch_size=4, max_length=64, reward_metrics=out / "metrics.json")
    stage = files.read_json(stage_path)
    keys = {(r["metric"], r["k"]) for r in stage["rows"]}
    assert keys == {(m, k) for m in ("bon_reward", "win_rate", "hard_win_rate") + ORACLE_METRICS + RM_SELECTED_METRICS
                    for k in (1, 2, 4)} | {(REWARD_MODEL_ACCURACY, None)}
    assert value(stage["rows"], REWARD_MODEL_ACCURACY) == pytest.approx(100 * metrics["heldout"]["per_family_accuracy"]["chat"])
    # The oracle's rows from the stage's own scores, recomputed here by enumeration.
    scores = files.read_jsonl(tmp_path / "scores.jsonl")
    for record in records:
        mine = [s for s in samples if s["prompt_id"] == record["id"]]
        quality = [record["quality"][k] for k in record["acceptable"][:3]] + [U]
        rm = [next(s["reward"] for s in scores if (s["prompt_id"], s["sample_index"]) == (record["id"], m["sample_index"]))
              for m in mine]
        ref = record["quality"][max(record["p"], key=record["p"].get)]
        for name, want in brute_force(quality, rm, ref, 2).items():
            assert value(stage["per_prompt"], name, 2, record["id"]) == pytest.approx(want, abs=1e-9), name
    # A reward model from elsewhere has no metrics: no accuracy row, the oracle still there.
    write_chat_quality(records, samples, out / "model", tmp_path / "s2.jsonl", tmp_path / "q2.json", {"model": "tiny"},
                       {}, [1], batch_size=4, max_length=64)
    assert {r["metric"] for r in files.read_json(tmp_path / "q2.json")["rows"]} == {
        "bon_reward", "win_rate", "hard_win_rate", *ORACLE_METRICS, *RM_SELECTED_METRICS}


# --------------------------------------------------------------------------- the report


def summary_row(objective, beta, metric, k, value, half=1.0):
    return {"model": "tiny", "objective": objective, "beta": beta, "task": "chat", "metric": metric, "k": k,
            "value": value, "ci_low": value - half, "ci_high": value + half, "n_prompts": 29, "n_seeds": 1}


def oracle_summary(with_oracle: bool = True) -> pd.DataFrame:
    rows = []
    for i, (objective, beta) in enumerate((("ce", "na"), ("gem", "0.7"))):
        for k in (1, 4, 32):
            rows.append(summary_row(objective, beta, "win_rate", k, 40.0 + i + k))
            if with_oracle:
                rows += [summary_row(objective, beta, "oracle_win_rate", k, 50.0 + i + k),
                         summary_row(objective, beta, "rm_selected_oracle_win_rate", k, 45.0 + i + k)]
        if with_oracle:
            rows.append(summary_row(objective, beta, REWARD_MODEL_ACCURACY, None, 61.25, half=8.0))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def test_beta_sweep_shows_the_oracle_beside_the_reward_model():
    df = tables.table3_beta_sweep(oracle_summary())
    assert list(df.columns) == ["run", "single sample", "BoN@32", "oracle: single sample", "oracle: BoN@32",
                                "oracle: RM's BoN@32", "RM held-out accuracy"]
    assert df.iloc[0].tolist() == ["CE", "41.0 ± 1.0", "72.0 ± 1.0", "51.0 ± 1.0", "82.0 ± 1.0", "77.0 ± 1.0",
                                   "61.2 ± 8.0"]
    assert list(tables.table3_beta_sweep(oracle_summary(False)).columns) == ["run", "single sample", "BoN@32"]


def test_fig7a_has_an_oracle_panel_in_the_world_only():
    summary = oracle_summary()
    fig = draw_figure("fig7a_bon_scaling", FigureData(summary=summary), {})
    assert len(fig.axes) == 2
    right = fig.axes[1]
    for objective, beta in (("ce", "na"), ("gem", "0.7")):
        run = summary[(summary.objective == objective) & (summary.beta == beta)]
        for metric, style in (("oracle_win_rate", "-"), ("rm_selected_oracle_win_rate", "--")):
            (line,) = [ln for ln in right.get_lines()
                       if ln.get_linestyle() == style and ln.get_color() == run_color(objective, beta)]
            want = run[run.metric == metric].sort_values("k")
            np.testing.assert_allclose(line.get_xdata(), want.k)
            np.testing.assert_allclose(line.get_ydata(), want.value)
    assert {"picked by the oracle", "picked by the reward model"} <= set(right.get_legend_handles_labels()[1])
    assert len(draw_figure("fig7a_bon_scaling", FigureData(summary=oracle_summary(False)), {}).axes) == 1
