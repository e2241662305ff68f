"""Chat (Section 6, Figures 6-7a, Tables 2-3): best-of-N reward and win rate against the reference,
and diversity of the sampled responses.

Best-of-N is the exact expectation over all size-N subsets of a prompt's samples (order
statistics); `compat: paper_code` uses the official script's first N samples instead. The win rate
is the Bradley-Terry probability sigmoid(r_best - r_ref); the hard win rate counts r_best > r_ref.

In the embedded world the same metrics are also computed under the world's oracle reward
(`gemsft.score.oracle`), and a trained reward model's held-out pair accuracy on chat prompts
(`reward_model_accuracy`) is reported beside them: how far its best-of-N can be trusted.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from gemsft import files
from gemsft.config import PAPER_CODE
from gemsft.score import REWARD_MODEL_ACCURACY, best_of_n, reward_model as reward
from gemsft.score.oracle import has_oracle, oracle_rows
from gemsft.evaluate.stage import mean_rows, metric, write_stage


def chat_quality(records: list[dict], samples: list[dict], sample_rewards: list[float],
                 reference_rewards: dict[str, float], ns: list[int], task: str = "chat",
                 compat: str | None = None) -> tuple[list[dict], list[dict]]:
    rewards, texts = defaultdict(list), defaultdict(list)
    for row, r in sorted(zip(samples, sample_rewards), key=lambda x: (x[0]["prompt_id"], x[0]["sample_index"])):
        rewards[row["prompt_id"]].append(r)
        texts[row["prompt_id"]].append(row.get("text"))
    oracle = has_oracle(records)
    best = best_of_n.first_n_best if compat == PAPER_CODE else best_of_n.expected_best_of_n
    win = best_of_n.first_n_win_rate if compat == PAPER_CODE else best_of_n.expected_win_rate
    per_prompt = []
    for record in records:
        pid = record["id"]
        r, ref = np.asarray(rewards[pid], dtype=float), reference_rewards[pid]
        for n in ns:
            if n > len(r):
                raise ValueError(f"best-of-{n} needs {n} samples but prompt {pid!r} has {len(r)}")
            per_prompt += [metric(task, "bon_reward", best(r, n), n, prompt_id=pid),
                           metric(task, "win_rate", 100.0 * win(r, ref, n), n, prompt_id=pid),
                           metric(task, "hard_win_rate", 100.0 * win(r, ref, n, hard=True), n, prompt_id=pid)]
        if oracle:
            per_prompt += oracle_rows(record, texts[pid], r, ns, task, compat)
    return mean_rows(per_prompt), per_prompt


def reward_model_rows(metrics: dict, source: str = "reward model metrics", task: str = "chat") -> list[dict]:
    """Per-prompt rows of the reward model's held-out pair accuracy (%) on the chat prompts it held out
    from training, weighted by their pairs so that the aggregate is the pair accuracy; from its
    training metrics (`gemsft.score.reward_model.train_reward_model`)."""
    prompts = (metrics.get("heldout") or {}).get("per_prompt")
    if prompts is None:
        raise ValueError(f"{source}: no 'heldout.per_prompt' results (written before they were recorded: "
                         "re-run the reward_model rule)")
    return [metric(task, REWARD_MODEL_ACCURACY, 100.0 * p["correct"] / p["pairs"], prompt_id=str(p["id"]),
                   weight=float(p["pairs"]))
            for p in prompts if p["family"] == "chat" and p["pairs"]]


# --------------------------------------------------------------------------- stage writers


def write_chat_quality(records: list[dict], samples: list[dict], reward_model_dir, scores_path, stage_path,
                       run: dict, config: dict, ns: list[int], batch_size: int, max_length: int,
                       compat: str | None = None, loading: dict | None = None, reward_metrics=None,
                       detokenizer=None) -> None:
    """Score every sample and each prompt's reference with the reward model (a directory or hub id,
    loaded on the stage's device with the `loading` settings: reward_model.dtype and
    attn_implementation); write the scores and the best-of-N / win-rate stage, which records the
    reward model's device, dtype and attention implementation under "reward_model". `reward_metrics`:
    the trained reward model's metrics JSON, whose held-out accuracy the stage reports (None for a
    reward model trained elsewhere). Under `compat` "paper_code" the samples are scored on the official
    reward input with `detokenizer` (the generating tokenizer) and the references without one: the
    official script reads the reference rows' `instruction` only on its no-detokenizer path."""
    by_id = {r["id"]: r for r in records}
    model, tokenizer = reward.load_reward_model(reward_model_dir, loading)
    kwargs = {"batch_size": batch_size, "max_length": max_length, "compat": compat}
    sample_rewards = reward.score(model, tokenizer, [by_id[s["prompt_id"]]["prompt"] for s in samples],
                                  [s["text"] for s in samples], detokenizer=detokenizer, **kwargs)
    reference_rewards = reward.score(model, tokenizer, [r["prompt"] for r in records],
                                     [r["reference"] for r in records], **kwargs)
    references = {r["id"]: float(x) for r, x in zip(records, reference_rewards)}
    files.write_jsonl(scores_path, [{"prompt_id": s["prompt_id"], "sample_index": s["sample_index"], "reward": float(x)}
                                 for s, x in zip(samples, sample_rewards)]
                   + [{"prompt_id": pid, "sample_index": None, "reward": x} for pid, x in references.items()])
    rows, per_prompt = chat_quality(records, samples, list(sample_rewards), references, ns, compat=compat)
    if reward_metrics is not None:
        accuracy = reward_model_rows(files.read_json(reward_metrics), str(reward_metrics))
        rows, per_prompt = rows + mean_rows(accuracy), per_prompt + accuracy
    # Where and how the rewards were computed (reward_model.dtype "auto" resolves per device).
    scored_by = {"model": str(reward_model_dir), "device": model.device.type,
                 "dtype": str(model.dtype).removeprefix("torch."),
                 "attn_implementation": model.config._attn_implementation}
    write_stage(stage_path, "chat_quality", run, rows, per_prompt, config, reward_model=scored_by)


