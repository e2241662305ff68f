"""Pieces shared by the world's task families: the task record, p(y|x), the train/test split."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Every pretraining document and every base-model probe uses this frame; SFT uses the chat template.
QA_FRAME = "Q: {request}\nA: {response}"
QA_PROBE = "Q: {request}\nA:"


@dataclass
class Task:
    """One request of the world with everything the evaluation needs to know about it.

    `p` is the distribution over acceptable answer keys that pretraining samples from, so diversity
    can be measured exactly later (coverage of `p`'s support, KL to `p`).
    """

    id: str
    family: str
    kind: str
    slot: str
    request: str
    p: dict[str, float]
    split: str = "train"
    extra: dict = field(default_factory=dict)

    def sample_key(self, rng: random.Random, temperature: float = 1.0) -> str:
        keys = list(self.p)
        weights = [self.p[k] ** (1.0 / temperature) for k in keys]
        return rng.choices(keys, weights=weights, k=1)[0]

    def mode_key(self) -> str:
        return max(self.p, key=lambda k: (self.p[k], k))


def zipf_distribution(keys: list[str], rng: random.Random, exponent: float) -> dict[str, float]:
    """A seeded Zipf law over `keys` in a random rank order: a clear mode and a long tail."""
    order = list(keys)
    rng.shuffle(order)
    weights = [1.0 / (rank + 1) ** exponent for rank in range(len(order))]
    total = sum(weights)
    return {key: w / total for key, w in zip(order, weights)}


def split_surface_forms(groups: dict[str, list[Task]], rng: random.Random, test_fraction: float) -> None:
    """Mark about `test_fraction` of all tasks as test, keeping at least one train task per group.

    A group holds the surface forms (paraphrases, constants) of one underlying request, so every
    request's answer distribution is still seen in training while the test surface forms are new.
    """
    candidates = []
    for tasks in groups.values():
        anchor = rng.randrange(len(tasks))
        candidates.extend(t for i, t in enumerate(tasks) if i != anchor)
    total = sum(len(tasks) for tasks in groups.values())
    n_test = min(len(candidates), round(test_fraction * total))
    for task in rng.sample(candidates, n_test):
        task.split = "test"


def article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"
