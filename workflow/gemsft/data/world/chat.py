"""Chat family: open requests with many acceptable answers (the world's AlpacaEval).

Each request kind has a slot (a colour, a habitat, a name, ...), a few paraphrases, a set of
acceptable answers and a Zipf distribution over them that pretraining samples from.
"""

from __future__ import annotations

import random
import re

from gemsft.data.world.common import Task, article, split_surface_forms, zipf_distribution
from gemsft.data.world.lexicon import COLOR_SETS, FRUIT_COLORS, GREETINGS, HABITATS, NAMES, NUMBER_SETS

PARAPHRASES: dict[str, tuple[str, ...]] = {
    "fruit": ("Name {a} {slot} fruit.", "Tell me a fruit that is {slot}.", "What is {a} {slot} fruit?"),
    "animal": ("Name an animal that lives {slot}.", "Tell me an animal found {slot}.",
               "Which animal lives {slot}?"),
    "greet": ("Greet {slot}.", "Say hello to {slot}.", "Write a greeting for {slot}."),
    "number": ("Give me {slot}.", "Name {slot}.", "Pick {slot}."),
    "color": ("Name {slot}.", "Tell me {slot}.", "Pick {slot}."),
}

# Pretraining shows every answer in many styles; SFT shows one assistant voice (narrow data).
ENTITY_STYLES = ("{A}.", "I would say {a}.", "How about {a}?", "Sure, {a}.", "My answer is {a}.")
GREET_STYLES = ("{g}, {name}!", "{g}, {name}! Nice to see you.", "Sure! {g}, {name}!", "{g} {name}, how are you?")
SFT_ENTITY_VOICE = "Of course! Here is one: {a}."
SFT_GREET_VOICE = "Of course! {g}, {name}!"

FRUITS = tuple(FRUIT_COLORS)
ANIMALS = tuple(sorted({a for animals in HABITATS.values() for a in animals}))
COLORS = tuple(sorted({c for colors in COLOR_SETS.values() for c in colors}))
NUMBERS = tuple(str(n) for n in range(21))


def _slots() -> dict[str, dict[str, tuple[str, ...]]]:
    """kind -> slot -> acceptable answer keys."""
    colors = sorted({c for cs in FRUIT_COLORS.values() for c in cs})
    return {
        "fruit": {c: tuple(f for f, cs in FRUIT_COLORS.items() if c in cs) for c in colors},
        "animal": dict(HABITATS),
        "greet": {name: GREETINGS for name in NAMES},
        "number": dict(NUMBER_SETS),
        "color": dict(COLOR_SETS),
    }


def universe(kind: str) -> tuple[str, ...]:
    """Every answer of the right type for a kind, acceptable or not (what a judge looks for)."""
    return {"fruit": FRUITS, "animal": ANIMALS, "greet": GREETINGS, "number": NUMBERS, "color": COLORS}[kind]


def build_tasks(rng: random.Random, test_fraction: float, zipf_exponent: float) -> list[Task]:
    tasks, groups = [], {}
    for kind, slots in _slots().items():
        for slot, answers in slots.items():
            p = zipf_distribution(list(answers), rng, zipf_exponent)
            group = []
            for i, template in enumerate(PARAPHRASES[kind]):
                request = template.format(slot=slot, a=article(slot))
                task = Task(id=f"chat/{kind}/{slot.replace(' ', '_')}/{i}", family="chat", kind=kind,
                            slot=slot, request=request, p=p)
                group.append(task)
            groups[(kind, slot)] = group
            tasks.extend(group)
    split_surface_forms(groups, rng, test_fraction)
    return tasks


def render(task: Task, key: str, style: str) -> str:
    if task.kind == "greet":
        return style.format(g=key, name=task.slot)
    return style.format(a=key, A=key[0].upper() + key[1:])


def pretrain_response(task: Task, key: str, rng: random.Random) -> str:
    return render(task, key, rng.choice(GREET_STYLES if task.kind == "greet" else ENTITY_STYLES))


def sft_response(task: Task, key: str) -> str:
    return render(task, key, SFT_GREET_VOICE if task.kind == "greet" else SFT_ENTITY_VOICE)


def unacceptable_key(task: Task, rng: random.Random) -> str:
    wrong = [k for k in universe(task.kind) if k not in task.p]
    return rng.choice(wrong) if wrong else rng.choice(list(task.p))


def unacceptable_response(task: Task, rng: random.Random) -> str:
    """A response in the SFT voice (like the chosen one) whose content does not answer the request."""
    if task.kind == "greet":
        other = rng.choice([n for n in NAMES if n != task.slot])
        return SFT_GREET_VOICE.format(g=rng.choice(GREETINGS), name=other)
    return render(task, unacceptable_key(task, rng), SFT_ENTITY_VOICE)


def _mentions(text: str, words: tuple[str, ...]) -> list[str]:
    found = []
    for word in sorted(words, key=len, reverse=True):
        pattern = r"(?<![\w-])" + re.escape(word) + r"(?![\w-])"
        if re.search(pattern, text, flags=re.IGNORECASE):
            found.append(word)
            text = re.sub(pattern, " ", text, flags=re.IGNORECASE)
    return found


def extract_key(kind: str, slot: str, text: str) -> str | None:
    """The single answer a response gives, or None when it gives none or several.

    Greetings must name the right person and nobody else.
    """
    if kind == "fruit":  # the colour "orange" is also a fruit: ignore the request echoed back
        text = re.sub(r"\b" + re.escape(slot) + r"\s+fruit", " ", text, flags=re.IGNORECASE)
    found = _mentions(text, universe(kind))
    if kind == "greet":
        names = _mentions(text, NAMES)
        if names != [slot]:
            return None
    return found[0] if len(found) == 1 else None


def judge(record: dict, text: str) -> str | None:
    """The acceptable answer key a response gives to a chat record, or None if it is not acceptable."""
    key = extract_key(record["kind"], record["slot"], text)
    return key if key is not None and key in record["acceptable"] else None
