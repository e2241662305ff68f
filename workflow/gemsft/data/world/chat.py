"""Chat family: open requests with many acceptable answers (the world's AlpacaEval).

Each request kind has a slot (a colour, a habitat, a name, ...), a few paraphrases, a set of
acceptable answers and a Zipf distribution over them that pretraining samples from. Each acceptable
answer also has a true quality, independent of how popular it is: the world's oracle reward.
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

# The oracle's score of a response that gives no acceptable answer. Acceptable answers' qualities are
# Normal(0, 1) logits, so this is below all of them but for a 3e-5 chance, and loses to an answer of
# average quality with Bradley-Terry probability sigmoid(-4) = 2%.
UNACCEPTABLE_QUALITY = -4.0
# What a preference pair's label is about (its "criterion" field).
ACCEPTABILITY, QUALITY = "acceptability", "quality"


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


def true_qualities(seed: int, kind: str, slot: str, keys) -> dict[str, float]:
    """The latent quality of each acceptable answer of a request, a Bradley-Terry logit ~ Normal(0, 1).

    Its own generator, seeded by (world seed, kind, slot) and fed the keys in sorted order: the world's
    main random stream does not move (every other file stays as it was), and the qualities are
    independent of p, so the popular answer is not the best one more often than any other.
    """
    rng = random.Random(f"gemsft-world/{seed}/chat-quality/{kind}/{slot}")
    return {key: rng.gauss(0.0, 1.0) for key in sorted(keys)}


def build_tasks(rng: random.Random, test_fraction: float, zipf_exponent: float, *, quality_seed: int) -> list[Task]:
    tasks, groups = [], {}
    for kind, slots in _slots().items():
        for slot, answers in slots.items():
            p = zipf_distribution(list(answers), rng, zipf_exponent)
            quality = true_qualities(quality_seed, kind, slot, answers)
            group = []
            for i, template in enumerate(PARAPHRASES[kind]):
                request = template.format(slot=slot, a=article(slot))
                task = Task(id=f"chat/{kind}/{slot.replace(' ', '_')}/{i}", family="chat", kind=kind,
                            slot=slot, request=request, p=p, extra={"quality": quality})
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


def preference_pair(task: Task, index: int, key: str, unacceptable: str, rng: random.Random) -> dict:
    """Chosen, rejected and criterion of the `index`-th preference pair of a chat prompt, labelled by
    the oracle as RLHF data is labelled by raters.

    Even pairs: `key` (an acceptable answer, drawn from p) against `unacceptable`, the pairs that teach
    what answers at all. Odd pairs: `key` against another acceptable answer, the higher quality one
    chosen, which teach the order among acceptable answers: the difference between the best of a
    diverse policy's samples and a mode-collapsed policy's. Half and half, so neither lesson is starved
    at the world's few pairs per prompt. The rival is uniform over the other acceptable answers, not
    drawn from p, so the rare answers (those only a diverse policy finds) get ranked too; it comes from
    `rng`, the chat pairs' own generator, not the world's main stream.
    """
    others = sorted(k for k in task.p if k != key)
    if index % 2 == 0 or not others:
        return {"chosen": sft_response(task, key), "rejected": unacceptable, "criterion": ACCEPTABILITY}
    quality = task.extra["quality"]
    better, worse = sorted((key, rng.choice(others)), key=lambda k: (quality[k], k), reverse=True)
    return {"chosen": sft_response(task, better), "rejected": sft_response(task, worse), "criterion": QUALITY}


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


def true_quality(record: dict, text: str) -> float:
    """The oracle reward of a response: the true quality of the acceptable answer it gives, or
    UNACCEPTABLE_QUALITY when it gives none. Only the world's records carry a "quality"."""
    quality = record.get("quality")
    if not isinstance(quality, dict):
        raise ValueError(f"chat record {record.get('id')!r} has no 'quality' mapping (only the embedded "
                         "world's eval_chat records have the oracle's answer qualities)")
    key = judge(record, text)
    if key is None:
        return UNACCEPTABLE_QUALITY
    if key not in quality:
        raise ValueError(f"chat record {record.get('id')!r}: acceptable answer {key!r} has no 'quality'")
    return float(quality[key])
