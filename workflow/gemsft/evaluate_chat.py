"""Chat (Section 6, Figures 6-7a, Tables 2-3): best-of-N reward and win rate against the reference,
and diversity of the sampled responses.

Best-of-N is the exact expectation over all size-N subsets of a prompt's samples (order
statistics); `compat: paper_code` uses the official script's first N samples instead. The win rate
is the Bradley-Terry probability sigmoid(r_best - r_ref); the hard win rate counts r_best > r_ref.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from . import io, metrics, reward
from .results import mean_rows, metric, write_stage
from .world import judge


def group_samples(samples: list[dict]) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for row in samples:
        groups[row["prompt_id"]].append(row)
    return {pid: sorted(rows, key=lambda r: r["sample_index"]) for pid, rows in groups.items()}


def chat_quality(records: list[dict], samples: list[dict], sample_rewards: list[float],
                 reference_rewards: dict[str, float], ns: list[int], task: str = "chat",
                 compat: str | None = None) -> tuple[list[dict], list[dict]]:
    rewards = defaultdict(list)
    for row, r in sorted(zip(samples, sample_rewards), key=lambda x: (x[0]["prompt_id"], x[0]["sample_index"])):
        rewards[row["prompt_id"]].append(r)
    best = reward.first_n_best if compat == "paper_code" else reward.expected_best_of_n
    win = reward.first_n_win_rate if compat == "paper_code" else reward.expected_win_rate
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
    return mean_rows(per_prompt), per_prompt


def chat_diversity(records: list[dict], samples: list[dict], task: str = "chat", sbert_model=None,
                   compat: str | None = None, world: bool = True) -> tuple[list[dict], list[dict]]:
    """n-gram, Self-BLEU and Sentence-BERT diversity per prompt (0-100), and in the world the
    acceptance rate, coverage of the acceptable answers and KL(sampled || p)."""
    groups = group_samples(samples)
    texts = {}
    for record in records:
        responses = [row["text"] for row in groups[record["id"]]]
        # The official code scores the templated prompt + response strings.
        texts[record["id"]] = [record["prompt"] + r for r in responses] if compat == "paper_code" else responses
    model = sbert_model or metrics._default_sbert_model()
    flat = [t for record in records for t in texts[record["id"]]]
    embeddings = model.encode(flat, batch_size=128, convert_to_numpy=True, show_progress_bar=True)
    per_prompt, start = [], 0
    for record in records:
        pid, responses = record["id"], texts[record["id"]]
        emb = embeddings[start:start + len(responses)]
        start += len(responses)
        per_prompt += [metric(task, "ngram_diversity", metrics.ngram_diversity(responses), prompt_id=pid),
                       metric(task, "self_bleu_diversity", metrics.self_bleu_diversity(responses, compat=compat),
                              prompt_id=pid),
                       metric(task, "sbert_diversity", metrics.sbert_diversity_from_embeddings(emb), prompt_id=pid)]
        if world:
            keys = [judge("chat", record, row["text"]) for row in groups[pid]]
            per_prompt += [
                metric(task, "acceptance", 100.0 * sum(k is not None for k in keys) / len(keys), prompt_id=pid),
                metric(task, "coverage", 100.0 * metrics.coverage(keys, record["acceptable"]), prompt_id=pid),
                metric(task, "kl_to_world", metrics.kl_to_world(keys, record["p"]), prompt_id=pid)]
    return mean_rows(per_prompt), per_prompt


# --------------------------------------------------------------------------- stage writers


def write_chat_quality(records: list[dict], samples: list[dict], reward_model_dir, scores_path, stage_path,
                       run: dict, config: dict, ns: list[int], batch_size: int, max_length: int,
                       compat: str | None = None) -> None:
    """Score every sample and each prompt's reference with the reward model; write the scores and the
    best-of-N / win-rate stage."""
    by_id = {r["id"]: r for r in records}
    model, tokenizer = reward.load_reward_model(reward_model_dir)
    kwargs = {"batch_size": batch_size, "max_length": max_length}
    sample_rewards = reward.score(model, tokenizer, [by_id[s["prompt_id"]]["prompt"] for s in samples],
                                  [s["text"] for s in samples], **kwargs)
    reference_rewards = reward.score(model, tokenizer, [r["prompt"] for r in records],
                                     [r["reference"] for r in records], **kwargs)
    references = {r["id"]: float(x) for r, x in zip(records, reference_rewards)}
    io.write_jsonl(scores_path, [{"prompt_id": s["prompt_id"], "sample_index": s["sample_index"], "reward": float(x)}
                                 for s, x in zip(samples, sample_rewards)]
                   + [{"prompt_id": pid, "sample_index": None, "reward": x} for pid, x in references.items()])
    rows, per_prompt = chat_quality(records, samples, list(sample_rewards), references, ns, compat=compat)
    write_stage(stage_path, "chat_quality", run, rows, per_prompt, config)


def write_diversity(records: list[dict], samples: list[dict], stage_path, export_path, run: dict, config: dict,
                    compat: str | None = None, world: bool = True) -> None:
    """The diversity stage, and alpaca_eval's model_outputs.json (each prompt's first sample) for its
    official annotators. `world`: the records are the world's (with the true answer distribution)."""
    rows, per_prompt = chat_diversity(records, samples, compat=compat, world=world)
    write_stage(stage_path, "diversity", run, rows, per_prompt, config)
    groups = group_samples(samples)
    generator = f"gemsft-{run['model']}-{run['objective']}-beta{run['beta']}-seed{run['seed']}"
    io.write_json(export_path, [{"instruction": r["prompt"], "output": groups[r["id"]][0]["text"],
                                 "generator": generator, "dataset": r.get("dataset", "gemsft_world")} for r in records])
