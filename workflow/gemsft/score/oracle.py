"""Best-of-N and win rate under the embedded world's oracle reward, beside the trained reward model's.

The world knows the true quality of every chat answer (`gemsft.data.world.chat.true_quality`, a
Bradley-Terry logit), so a prompt's samples are scored twice more at every N:

- `oracle_bon_reward`, `oracle_win_rate`, `oracle_hard_win_rate`: best-of-N picked by the true quality
  and scored by it, what the policy's samples hold under a perfect reward model;
- `rm_selected_oracle_reward`, `rm_selected_oracle_win_rate`, `rm_selected_oracle_hard_win_rate`:
  best-of-N picked by the trained reward model and scored by the true quality, what best-of-N with
  the trained reward model really delivers.

The reference answer's true quality is r_ref. Same estimators as the reward model's metrics: the
exact expectation over size-N subsets, or the first N samples under `compat: paper_code`. Real data
has no oracle: its records carry no "quality" and get none of these rows.
"""

from __future__ import annotations

import numpy as np

from gemsft.config import PAPER_CODE
from gemsft.data.world.chat import true_quality
from gemsft.evaluate.stage import metric
from gemsft.score import best_of_n

ORACLE_METRICS = ("oracle_bon_reward", "oracle_win_rate", "oracle_hard_win_rate")
RM_SELECTED_METRICS = ("rm_selected_oracle_reward", "rm_selected_oracle_win_rate",
                       "rm_selected_oracle_hard_win_rate")


def has_oracle(records: list[dict]) -> bool:
    """Whether the chat records carry the world's answer qualities; all of them or none must."""
    lacking = [r.get("id") for r in records if "quality" not in r]
    if lacking and len(lacking) < len(records):
        raise ValueError(f"chat record {lacking[0]!r} has no 'quality' while other records of the same "
                         "file have one (the oracle needs every record's answer qualities)")
    return bool(records) and not lacking


def oracle_rows(record: dict, texts: list[str], rewards, ns: list[int], task: str = "chat",
                compat: str | None = None) -> list[dict]:
    """Per-prompt rows of one record: its samples' `texts` and reward-model `rewards` (same order)."""
    if len(texts) != len(rewards):
        raise ValueError(f"prompt {record.get('id')!r}: {len(texts)} sample texts but {len(rewards)} rewards")
    quality = np.array([true_quality(record, text) for text in texts], dtype=np.float64)
    ref = true_quality(record, record["reference"])
    first_n = compat == PAPER_CODE
    best = best_of_n.first_n_best if first_n else best_of_n.expected_best_of_n
    win = best_of_n.first_n_win_rate if first_n else best_of_n.expected_win_rate
    selected = best_of_n.first_n_selected if first_n else best_of_n.expected_selected
    pid, rows = record["id"], []
    for n in ns:
        by_oracle = (best(quality, n), 100.0 * win(quality, ref, n), 100.0 * win(quality, ref, n, hard=True))
        by_rm = (selected(rewards, quality, n), 100.0 * selected(rewards, quality, n, best_of_n.win_against(ref)),
                 100.0 * selected(rewards, quality, n, best_of_n.win_against(ref, hard=True)))
        rows += [metric(task, name, value, n, prompt_id=pid)
                 for name, value in zip(ORACLE_METRICS + RM_SELECTED_METRICS, by_oracle + by_rm)]
    return rows
