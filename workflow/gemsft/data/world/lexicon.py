"""Fixed vocabulary of the embedded world.

Every request family draws its slots and answers from these lists. They are small on purpose: a
1M-parameter model must be able to learn the whole world in a minute of CPU pretraining.
"""

FRUIT_COLORS: dict[str, tuple[str, ...]] = {
    "apple": ("red", "green"),
    "cherry": ("red",),
    "strawberry": ("red",),
    "raspberry": ("red",),
    "tomato": ("red",),
    "banana": ("yellow",),
    "lemon": ("yellow",),
    "pineapple": ("yellow",),
    "mango": ("yellow", "orange"),
    "lime": ("green",),
    "pear": ("green",),
    "kiwi": ("green",),
    "grape": ("green", "purple"),
    "plum": ("purple",),
    "fig": ("purple",),
    "blackberry": ("purple",),
    "orange": ("orange",),
    "apricot": ("orange",),
    "peach": ("orange",),
}

HABITATS: dict[str, tuple[str, ...]] = {
    "in the sea": ("fish", "whale", "shark", "crab", "seal", "octopus", "dolphin"),
    "on a farm": ("cow", "pig", "sheep", "goat", "horse", "hen", "duck"),
    "in the forest": ("fox", "bear", "deer", "owl", "wolf", "squirrel"),
    "in the desert": ("camel", "lizard", "scorpion", "snake", "vulture"),
}

NAMES: tuple[str, ...] = (
    "Anna", "Ben", "Carla", "Dan", "Eva", "Finn", "Gina", "Hugo", "Ivy", "Jack", "Kira", "Leo",
    "Mia", "Nora", "Omar", "Paul", "Rosa", "Sam", "Tara", "Umar", "Vera", "Will", "Yara", "Zoe",
)

GREETINGS: tuple[str, ...] = ("Hello", "Hi", "Hey", "Good morning", "Welcome", "Greetings")

NUMBER_SETS: dict[str, tuple[str, ...]] = {
    "a single-digit number": tuple(str(d) for d in range(10)),
    "an even number below ten": ("0", "2", "4", "6", "8"),
    "an odd number below ten": ("1", "3", "5", "7", "9"),
}

COLOR_SETS: dict[str, tuple[str, ...]] = {
    "a color of the rainbow": ("red", "orange", "yellow", "green", "blue", "indigo", "violet"),
    "a primary color": ("red", "blue", "yellow"),
    "a warm color": ("red", "orange", "yellow", "pink", "brown"),
}

MATH_ITEMS: tuple[str, ...] = ("apple", "book", "coin", "card", "stamp", "marble", "pencil", "shell")

# Syllables for the invented countries and cities whose facts exist only in pretraining text.
SYLLABLES: tuple[str, ...] = (
    "zor", "bel", "quin", "ta", "vor", "mel", "dra", "ko", "lun", "shi", "pra", "gos",
    "nir", "fal", "ub", "ek", "ryn", "tho", "cal", "mar", "sil", "ven", "o", "ash",
)
