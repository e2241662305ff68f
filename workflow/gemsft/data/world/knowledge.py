"""Knowledge family: facts about invented countries that appear only in pretraining text and are
probed later as multiple choice (the world's Open LLM Leaderboard, to measure forgetting)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from gemsft.data.world.chat import ANIMALS
from gemsft.data.world.lexicon import SYLLABLES

STATEMENTS = {
    "capital": ("The capital of {c} is {x}.", "{x} is the capital of {c}.", "{c} has its capital in {x}."),
    "animal": ("The national animal of {c} is the {x}.", "In {c}, the {x} is the national animal.",
               "The {x} is the national animal of {c}."),
}
QUESTIONS = {"capital": "What is the capital of {c}?", "animal": "What is the national animal of {c}?"}


@dataclass(frozen=True)
class Fact:
    id: str
    relation: str
    country: str
    answer: str
    choices: tuple[str, ...]
    gold: int

    @property
    def question(self) -> str:
        return QUESTIONS[self.relation].format(c=self.country)


def _invented_names(rng: random.Random, n: int, syllables: int, taken: set[str]) -> list[str]:
    if n > len(SYLLABLES) ** syllables - len(taken):
        raise ValueError(f"world.knowledge.n_countries is too large: the lexicon makes only "
                         f"{len(SYLLABLES) ** syllables // 2} countries with distinct capitals")
    names = []
    while len(names) < n:
        name = "".join(rng.choice(SYLLABLES) for _ in range(syllables)).capitalize()
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def build_facts(rng: random.Random, n_countries: int, n_choices: int = 4) -> list[Fact]:
    if n_countries < n_choices:
        raise ValueError(f"world.knowledge.n_countries must be at least {n_choices} (one per answer choice)")
    taken: set[str] = set()
    countries = [c + "ia" for c in _invented_names(rng, n_countries, 2, taken)]
    capitals = _invented_names(rng, n_countries, 2, taken)
    animals = [rng.choice(ANIMALS) for _ in countries]
    facts = []
    for relation, answers, pool in (("capital", capitals, capitals), ("animal", animals, list(ANIMALS))):
        for i, (country, answer) in enumerate(zip(countries, answers)):
            distractors = rng.sample(sorted(set(pool) - {answer}), n_choices - 1)
            choices = distractors + [answer]
            rng.shuffle(choices)
            facts.append(Fact(id=f"knowledge/{relation}/{i}", relation=relation, country=country,
                              answer=answer, choices=tuple(choices), gold=choices.index(answer)))
    return facts


def documents(fact: Fact, rng: random.Random, repeats: int) -> list[str]:
    """`repeats` pretraining documents stating the fact, in statement and question form."""
    forms = [s.format(c=fact.country, x=fact.answer) for s in STATEMENTS[fact.relation]]
    forms.append(f"Q: {fact.question}\nA: {fact.answer}.")
    return [rng.choice(forms) for _ in range(repeats)]
