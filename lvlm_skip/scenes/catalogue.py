"""What a scene can contain, and the training priors: object kinds, colours, positions, backgrounds.

Every object kind has a plural, a *typical colour* and a *prior partner* (:data:`OBJECTS`); in
training scenes an object takes its typical colour, and its partner is present, with probability
:data:`PRIOR_P`. Those two language priors are what a model learns and then hallucinates from
(see :mod:`lvlm_skip.scenes`). Plain constants: nothing here draws or samples.
"""

from __future__ import annotations

IMAGE_SIZE = 112
"""Side of the square RGB images, in pixels."""

PRIOR_P = 0.87
"""Probability that a training object takes its typical colour / that its partner is present."""

SPLITS = ("train", "test", "test-consistent", "test-breaking", "uniform")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "yellow": (245, 210, 20),
    "green": (40, 160, 50),
    "blue": (40, 80, 220),
    "orange": (245, 130, 20),
    "purple": (140, 50, 180),
    "pink": (250, 120, 190),
    "brown": (125, 75, 30),
}

POSITIONS = ("left", "top", "center", "bottom", "right")
"""Positions in canonical caption order."""

POSITION_CELL: dict[str, tuple[int, int]] = {
    "left": (0, 1), "right": (2, 1), "top": (1, 0), "bottom": (1, 2), "center": (1, 1),
}
"""Position -> (column, row) in a 3x3 grid (the corners stay empty)."""

POSITION_PHRASE = {
    "left": "on the left", "right": "on the right", "top": "at the top",
    "bottom": "at the bottom", "center": "in the center",
}

NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}

# kind -> (plural, typical colour, partner)
OBJECTS: dict[str, tuple[str, str, str]] = {
    "apple": ("apples", "red", "banana"),
    "banana": ("bananas", "yellow", "apple"),
    "cup": ("cups", "blue", "plate"),
    "plate": ("plates", "yellow", "cup"),
    "car": ("cars", "red", "tree"),
    "tree": ("trees", "green", "car"),
    "fish": ("fishes", "orange", "boat"),
    "boat": ("boats", "brown", "fish"),
    "star": ("stars", "yellow", "moon"),
    "moon": ("moons", "orange", "star"),
    "umbrella": ("umbrellas", "purple", "hat"),
    "hat": ("hats", "brown", "umbrella"),
    "key": ("keys", "orange", "book"),
    "book": ("books", "blue", "key"),
    "kite": ("kites", "pink", "ball"),
    "ball": ("balls", "green", "kite"),
    "bell": ("bells", "yellow", "clock"),
    "clock": ("clocks", "purple", "bell"),
    "heart": ("hearts", "pink", "flower"),
    "flower": ("flowers", "purple", "heart"),
    "bottle": ("bottles", "green", "candle"),
    "candle": ("candles", "red", "bottle"),
    "house": ("houses", "brown", "mushroom"),
    "mushroom": ("mushrooms", "red", "house"),
}
"""Object kind -> (plural, typical colour, prior partner). Partners are symmetric."""

KINDS = tuple(OBJECTS)
PAIRS = tuple(sorted({tuple(sorted((k, v[2]))) for k, v in OBJECTS.items()}))

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "cream": (245, 238, 215), "gray": (205, 205, 205), "sky": (200, 225, 245),
    "mint": (210, 240, 215), "sand": (235, 220, 185), "lilac": (230, 220, 240),
}
TEXTURES = ("plain", "stripes", "dots", "checker", "noise")
