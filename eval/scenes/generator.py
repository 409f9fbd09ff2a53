"""Procedural scenes with exactly known content and built-in language priors.

A scene is a handful of simple drawn objects (apple, cup, car, tree, ...) on a textured
background. Every object kind has a colour, a count (1-3), a size (small/large) and one of five
positions (left, right, top, bottom, center). The training distribution carries two *language
priors* that a model can learn and then hallucinate from:

* **co-occurrence**: object kinds come in fixed partner pairs (cup with plate, car with tree, ...),
  and in training scenes a kind's partner is present most of the time (``PRIOR_P``);
* **typical colour**: every kind has a typical colour (apple red, banana yellow, ...), taken most of
  the time (``PRIOR_P``).

Splits:

* ``train`` / ``test``: the prior distribution above (``test`` is the same distribution with
  different scenes);
* ``test-consistent``: every object has its typical colour and every partner is present;
* ``test-breaking``: every object has an atypical colour and no partner is present, so whatever
  the priors suggest (the partner, the typical colour) is a hallucination;
* ``uniform``: no priors (uniform colours, partner present half the time); used to pre-train the
  vision tower so that it learns shapes rather than colour shortcuts.

Everything is a pure function of ``(split, seed, index)``: scene ``i`` of a split is drawn from its
own ``random.Random`` seeded with the string ``"{split}:{seed}:{i}"``, so scenes are reproducible
one by one and different splits/seeds give disjoint random streams.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re

from PIL import Image, ImageDraw

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


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One object kind in a scene (possibly several copies).

    Attributes:
        kind: Object kind, a key of ``OBJECTS``.
        color: Colour name, a key of ``COLORS``.
        count: Number of copies (1-3).
        size: ``"small"`` or ``"large"``.
        position: One of ``POSITIONS``.
        boxes: Pixel boxes ``(x, y, w, h)`` of the drawn copies.
    """

    kind: str
    color: str
    count: int
    size: str
    position: str
    boxes: tuple[tuple[int, int, int, int], ...] = ()

    @property
    def word(self) -> str:
        """The noun as used in captions (singular or plural)."""
        return self.kind if self.count == 1 else OBJECTS[self.kind][0]

    def phrase(self) -> str:
        """Caption phrase, e.g. ``"two blue cups at the bottom"``."""
        det = "a" if self.count == 1 else NUMBER_WORDS[self.count]
        return f"{det} {self.color} {self.word} {POSITION_PHRASE[self.position]}"


@dataclasses.dataclass(frozen=True)
class Scene:
    """A generated scene: its objects, background and the drawn image.

    Attributes:
        split: Split name.
        seed: Split seed.
        index: Scene index within the split (0-based).
        objects: Objects in canonical (position) order.
        background: Background colour name.
        texture: Background texture name.
        image: The rendered ``PIL.Image`` (RGB, ``IMAGE_SIZE`` square).
    """

    split: str
    seed: int
    index: int
    objects: tuple[SceneObject, ...]
    background: str
    texture: str
    image: Image.Image

    @property
    def kinds(self) -> list[str]:
        """Object kinds present, in caption order."""
        return [o.kind for o in self.objects]

    def get(self, kind: str) -> SceneObject | None:
        """The object of a kind, or ``None`` if absent."""
        return next((o for o in self.objects if o.kind == kind), None)

    def caption(self, order: list[int] | None = None) -> str:
        """Caption such as ``"a red apple on the left and two blue cups at the bottom."``.

        Args:
            order: Optional permutation of object indices; canonical order by default.
        """
        objs = [self.objects[i] for i in order] if order is not None else list(self.objects)
        phrases = [o.phrase() for o in objs]
        if len(phrases) == 1:
            body = phrases[0]
        else:
            body = ", ".join(phrases[:-1]) + " and " + phrases[-1]
        return body + "."

    def prior_partners_absent(self) -> list[str]:
        """Partners of present objects that are absent: what the co-occurrence prior suggests."""
        present = set(self.kinds)
        out = []
        for k in self.kinds:
            p = OBJECTS[k][2]
            if p not in present and p not in out:
                out.append(p)
        return out


# ----------------------------------------------------------------------------- drawing


def _draw_shape(d: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, s: float,
                fill: tuple[int, int, int], bg: tuple[int, int, int]) -> None:
    """Draw one object of ``kind`` centred at ``(cx, cy)`` with side ``s`` in colour ``fill``.

    ``bg`` is the background base colour, used to cut crescents (banana, moon) out of discs.
    """
    ol = (25, 25, 25)
    h = s / 2
    w = max(1, round(s / 14))

    def box(x0, y0, x1, y1):
        return [cx + x0 * h, cy + y0 * h, cx + x1 * h, cy + y1 * h]

    def pts(seq):
        return [(cx + x * h, cy + y * h) for x, y in seq]

    if kind == "apple":
        d.ellipse(box(-0.85, -0.6, 0.85, 0.95), fill=fill, outline=ol, width=w)
        d.line(pts([(0, -0.6), (0.1, -1.0)]), fill=ol, width=w + 1)
        d.ellipse(box(0.15, -1.0, 0.7, -0.7), fill=(40, 140, 40))
    elif kind == "banana":
        d.arc(box(-1.0, -1.5, 1.0, 0.75), 15, 165, fill=ol, width=max(3, round(s * 0.34)))
        d.arc(box(-0.95, -1.45, 0.95, 0.7), 18, 162, fill=fill, width=max(2, round(s * 0.27)))
    elif kind == "cup":
        d.polygon(pts([(-0.7, -0.7), (0.45, -0.7), (0.3, 0.8), (-0.55, 0.8)]), fill=fill,
                  outline=ol, width=w)
        d.arc(box(0.2, -0.4, 0.95, 0.35), -90, 90, fill=ol, width=w + 1)
    elif kind == "plate":
        d.ellipse(box(-1.0, -0.45, 1.0, 0.45), fill=fill, outline=ol, width=w)
        d.ellipse(box(-0.55, -0.22, 0.55, 0.22), outline=ol, width=w)
    elif kind == "car":
        d.rectangle(box(-1.0, -0.15, 1.0, 0.45), fill=fill, outline=ol, width=w)
        d.polygon(pts([(-0.5, -0.15), (-0.3, -0.6), (0.35, -0.6), (0.55, -0.15)]), fill=fill,
                  outline=ol, width=w)
        for x in (-0.55, 0.55):
            d.ellipse(box(x - 0.27, 0.3, x + 0.27, 0.84), fill=ol)
    elif kind == "tree":
        d.rectangle(box(-0.15, 0.3, 0.15, 1.0), fill=(110, 65, 25), outline=ol)
        d.polygon(pts([(0, -1.0), (0.8, 0.4), (-0.8, 0.4)]), fill=fill, outline=ol, width=w)
    elif kind == "fish":
        d.ellipse(box(-0.9, -0.45, 0.45, 0.45), fill=fill, outline=ol, width=w)
        d.polygon(pts([(0.35, 0), (1.0, -0.5), (1.0, 0.5)]), fill=fill, outline=ol, width=w)
        d.ellipse(box(-0.6, -0.2, -0.4, 0.0), fill=ol)
    elif kind == "boat":
        d.polygon(pts([(-1.0, 0.35), (1.0, 0.35), (0.6, 0.85), (-0.6, 0.85)]), fill=fill,
                  outline=ol, width=w)
        d.line(pts([(0, 0.35), (0, -1.0)]), fill=ol, width=w)
        d.polygon(pts([(0.08, -0.9), (0.75, 0.2), (0.08, 0.2)]), fill=(250, 250, 250), outline=ol)
    elif kind == "star":
        p = []
        for i in range(10):
            r = 1.0 if i % 2 == 0 else 0.42
            a = -math.pi / 2 + i * math.pi / 5
            p.append((r * math.cos(a), r * math.sin(a)))
        d.polygon(pts(p), fill=fill, outline=ol, width=w)
    elif kind == "moon":
        d.ellipse(box(-0.9, -0.9, 0.9, 0.9), fill=fill, outline=ol, width=w)
        d.ellipse(box(-0.35, -1.0, 1.15, 0.5), fill=bg)
    elif kind == "umbrella":
        d.pieslice(box(-1.0, -0.9, 1.0, 0.9), 180, 360, fill=fill, outline=ol, width=w)
        d.line(pts([(0, 0), (0, 0.8)]), fill=ol, width=w + 1)
        d.arc(box(-0.35, 0.6, 0.05, 1.0), 0, 180, fill=ol, width=w + 1)
    elif kind == "hat":
        d.rectangle(box(-1.0, 0.35, 1.0, 0.6), fill=fill, outline=ol, width=w)
        d.rectangle(box(-0.55, -0.6, 0.55, 0.4), fill=fill, outline=ol, width=w)
        d.rectangle(box(-0.55, 0.1, 0.55, 0.3), fill=ol)
    elif kind == "key":
        d.ellipse(box(-1.0, -0.45, -0.1, 0.45), fill=fill, outline=ol, width=w)
        d.ellipse(box(-0.7, -0.15, -0.4, 0.15), fill=ol)
        d.rectangle(box(-0.15, -0.12, 1.0, 0.12), fill=fill, outline=ol)
        d.rectangle(box(0.6, 0.1, 0.75, 0.45), fill=fill, outline=ol)
        d.rectangle(box(0.85, 0.1, 1.0, 0.45), fill=fill, outline=ol)
    elif kind == "book":
        d.rectangle(box(-0.7, -0.9, 0.7, 0.9), fill=fill, outline=ol, width=w)
        d.rectangle(box(-0.7, -0.9, -0.4, 0.9), fill=ol)
        d.line(pts([(-0.2, -0.4), (0.5, -0.4)]), fill=(250, 250, 250), width=w)
    elif kind == "kite":
        d.polygon(pts([(0, -1.0), (0.6, -0.2), (0, 0.5), (-0.6, -0.2)]), fill=fill, outline=ol,
                  width=w)
        d.line(pts([(0, 0.5), (0.2, 0.75), (-0.1, 0.9), (0.15, 1.0)]), fill=ol, width=w)
    elif kind == "ball":
        d.ellipse(box(-0.85, -0.85, 0.85, 0.85), fill=fill, outline=ol, width=w)
        d.arc(box(-0.85, -0.35, 0.85, 0.35), 0, 180, fill=(250, 250, 250), width=w + 1)
        d.arc(box(-0.85, -0.35, 0.85, 0.35), 180, 360, fill=(250, 250, 250), width=w + 1)
    elif kind == "bell":
        d.polygon(pts([(-0.3, -0.8), (0.3, -0.8), (0.55, -0.2), (0.9, 0.6), (-0.9, 0.6),
                       (-0.55, -0.2)]), fill=fill, outline=ol, width=w)
        d.ellipse(box(-0.2, 0.55, 0.2, 0.95), fill=ol)
    elif kind == "clock":
        d.ellipse(box(-0.95, -0.95, 0.95, 0.95), fill=fill, outline=ol, width=w)
        d.ellipse(box(-0.65, -0.65, 0.65, 0.65), fill=(250, 250, 250))
        d.line(pts([(0, 0), (0, -0.55)]), fill=ol, width=w + 1)
        d.line(pts([(0, 0), (0.4, 0.1)]), fill=ol, width=w + 1)
    elif kind == "heart":
        d.ellipse(box(-0.95, -0.8, 0.05, 0.2), fill=fill)
        d.ellipse(box(-0.05, -0.8, 0.95, 0.2), fill=fill)
        d.polygon(pts([(-0.93, -0.2), (0.93, -0.2), (0, 0.95)]), fill=fill)
    elif kind == "flower":
        for i in range(5):
            a = -math.pi / 2 + i * 2 * math.pi / 5
            x, y = 0.55 * math.cos(a), 0.55 * math.sin(a)
            d.ellipse(box(x - 0.42, y - 0.42, x + 0.42, y + 0.42), fill=fill, outline=ol)
        d.ellipse(box(-0.3, -0.3, 0.3, 0.3), fill=(250, 220, 60), outline=ol)
    elif kind == "bottle":
        d.rectangle(box(-0.45, -0.3, 0.45, 1.0), fill=fill, outline=ol, width=w)
        d.rectangle(box(-0.18, -1.0, 0.18, -0.3), fill=fill, outline=ol, width=w)
        d.rectangle(box(-0.45, 0.1, 0.45, 0.45), fill=(250, 250, 250))
    elif kind == "candle":
        d.rectangle(box(-0.35, -0.3, 0.35, 1.0), fill=fill, outline=ol, width=w)
        d.line(pts([(0, -0.3), (0, -0.5)]), fill=ol, width=w)
        d.ellipse(box(-0.2, -1.0, 0.2, -0.45), fill=(255, 200, 0), outline=(230, 90, 0))
    elif kind == "house":
        d.rectangle(box(-0.75, -0.1, 0.75, 1.0), fill=fill, outline=ol, width=w)
        d.polygon(pts([(-1.0, -0.1), (0, -1.0), (1.0, -0.1)]), fill=(90, 90, 90), outline=ol)
        d.rectangle(box(-0.2, 0.4, 0.2, 1.0), fill=ol)
    elif kind == "mushroom":
        d.rectangle(box(-0.25, 0.0, 0.25, 0.95), fill=(240, 230, 210), outline=ol, width=w)
        d.pieslice(box(-1.0, -0.9, 1.0, 0.5), 180, 360, fill=fill, outline=ol, width=w)
        d.ellipse(box(-0.5, -0.6, -0.2, -0.3), fill=(250, 250, 250))
        d.ellipse(box(0.2, -0.55, 0.5, -0.25), fill=(250, 250, 250))
    else:  # pragma: no cover - guarded by OBJECTS
        raise ValueError(f"unknown kind {kind!r}")


def _draw_background(rng: random.Random, name: str, texture: str) -> Image.Image:
    """A light background with a low-contrast texture."""
    base = BACKGROUNDS[name]
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), base)
    d = ImageDraw.Draw(img)
    dark = tuple(max(0, c - 22) for c in base)
    if texture == "stripes":
        step = rng.choice((8, 12, 16))
        for x in range(-IMAGE_SIZE, IMAGE_SIZE, step):
            d.line([(x, IMAGE_SIZE), (x + IMAGE_SIZE, 0)], fill=dark, width=2)
    elif texture == "dots":
        step = rng.choice((10, 14))
        for x in range(4, IMAGE_SIZE, step):
            for y in range(4, IMAGE_SIZE, step):
                d.ellipse([x - 1, y - 1, x + 1, y + 1], fill=dark)
    elif texture == "checker":
        step = rng.choice((14, 28))
        for x in range(0, IMAGE_SIZE, step):
            for y in range(0, IMAGE_SIZE, step):
                if (x // step + y // step) % 2:
                    d.rectangle([x, y, x + step - 1, y + step - 1], fill=dark)
    elif texture == "noise":
        for _ in range(400):
            x, y = rng.randrange(IMAGE_SIZE), rng.randrange(IMAGE_SIZE)
            d.point((x, y), fill=dark)
    return img


def _layout(rng: random.Random, obj: SceneObject) -> list[tuple[float, float, float]]:
    """Centres and sides ``(cx, cy, s)`` of the copies of ``obj`` inside its grid cell."""
    cell = IMAGE_SIZE / 3
    col, row = POSITION_CELL[obj.position]
    ccx, ccy = (col + 0.5) * cell, (row + 0.5) * cell
    if obj.count == 1:
        s = 30 if obj.size == "large" else 17
    else:
        s = 18 if obj.size == "large" else 13
    jitter = 2.0
    gap = s + 3
    if obj.count == 1:
        offs = [(0.0, 0.0)]
    elif obj.position in ("left", "right"):
        offs = [(0.0, (i - (obj.count - 1) / 2) * gap) for i in range(obj.count)]
    elif obj.position in ("top", "bottom"):
        offs = [((i - (obj.count - 1) / 2) * gap, 0.0) for i in range(obj.count)]
    elif obj.count == 2:
        offs = [(-gap / 2, 0.0), (gap / 2, 0.0)]
    else:
        offs = [(-gap / 2, gap / 3), (gap / 2, gap / 3), (0.0, -gap * 2 / 3)]
    out = []
    for dx, dy in offs:
        out.append((ccx + dx + rng.uniform(-jitter, jitter),
                    ccy + dy + rng.uniform(-jitter, jitter), s))
    return out


def render(rng: random.Random, objects: list[SceneObject], background: str,
           texture: str) -> tuple[Image.Image, list[SceneObject]]:
    """Draw the objects on a background.

    Returns:
        The image and the objects with their ``boxes`` filled in.
    """
    img = _draw_background(rng, background, texture)
    d = ImageDraw.Draw(img)
    out = []
    for obj in objects:
        boxes = []
        for cx, cy, s in _layout(rng, obj):
            _draw_shape(d, obj.kind, cx, cy, s, COLORS[obj.color], BACKGROUNDS[background])
            boxes.append((round(cx - s / 2), round(cy - s / 2), round(s), round(s)))
        out.append(dataclasses.replace(obj, boxes=tuple(boxes)))
    return img, out


# ----------------------------------------------------------------------------- sampling


def _atypical_color(rng: random.Random, kind: str) -> str:
    typical = OBJECTS[kind][1]
    return rng.choice([c for c in COLORS if c != typical])


def _sample_kinds(rng: random.Random, split: str) -> list[str]:
    """Object kinds of one scene according to the split's co-occurrence rule."""
    n_groups = rng.choice((1, 2))
    pairs = rng.sample(PAIRS, n_groups)
    kinds: list[str] = []
    for pair in pairs:
        first, second = pair if rng.random() < 0.5 else pair[::-1]
        if split == "test-consistent":
            full = True
        elif split == "test-breaking":
            full = False
        elif split == "uniform":
            full = rng.random() < 0.5
        else:
            full = rng.random() < PRIOR_P
        kinds.extend([first, second] if full else [first])
    return kinds


def _sample_color(rng: random.Random, split: str, kind: str) -> str:
    if split == "test-consistent":
        return OBJECTS[kind][1]
    if split == "test-breaking":
        return _atypical_color(rng, kind)
    if split == "uniform":
        return rng.choice(sorted(COLORS))
    return OBJECTS[kind][1] if rng.random() < PRIOR_P else _atypical_color(rng, kind)


def make_scene(split: str, seed: int, index: int) -> Scene:
    """Generate scene ``index`` of ``split`` for ``seed``.

    Args:
        split: One of ``SPLITS``.
        seed: Split seed.
        index: Scene index (0-based).

    Returns:
        The scene, image included.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    rng = random.Random(f"{split}:{seed}:{index}")
    kinds = _sample_kinds(rng, split)
    positions = rng.sample(POSITIONS, len(kinds))
    objs = [
        SceneObject(kind=k, color=_sample_color(rng, split, k), count=rng.choice((1, 1, 2, 3)),
                    size=rng.choice(("small", "large")), position=p)
        for k, p in zip(kinds, positions)
    ]
    objs.sort(key=lambda o: POSITIONS.index(o.position))
    background = rng.choice(sorted(BACKGROUNDS))
    texture = rng.choice(TEXTURES)
    img, objs = render(rng, objs, background, texture)
    return Scene(split=split, seed=seed, index=index, objects=tuple(objs), background=background,
                 texture=texture, image=img)


def generate(split: str, seed: int, n: int, start: int = 0) -> list[Scene]:
    """Scenes ``start .. start + n - 1`` of a split."""
    return [make_scene(split, seed, i) for i in range(start, start + n)]


# ----------------------------------------------------------------------------- questions


@dataclasses.dataclass(frozen=True)
class Question:
    """A question about a scene.

    Attributes:
        type: AMBER type name (``discriminative-hallucination``, ``discriminative-attribute-state``,
            ``discriminative-attribute-number``, ``discriminative-relation``) for yes/no questions,
            or ``vqa-color`` / ``vqa-number`` / ``vqa-position`` for single-word questions.
        query: The question text.
        answer: ``"yes"``/``"no"`` or the single-word answer.
        subject: The object kind asked about.
    """

    type: str
    query: str
    answer: str
    subject: str


def _is_are(o: SceneObject) -> tuple[str, str]:
    return ("is", o.kind) if o.count == 1 else ("are", OBJECTS[o.kind][0])


def relation_of(a: SceneObject, b: SceneObject) -> str | None:
    """Spatial relation of ``a`` to ``b`` when they share a row or column, else ``None``."""
    (ca, ra), (cb, rb) = POSITION_CELL[a.position], POSITION_CELL[b.position]
    if ra == rb and ca != cb:
        return "to the left of" if ca < cb else "to the right of"
    if ca == cb and ra != rb:
        return "above" if ra < rb else "below"
    return None


_OPPOSITE = {"to the left of": "to the right of", "to the right of": "to the left of",
             "above": "below", "below": "above"}


def yes_no_questions(scene: Scene, rng: random.Random) -> list[Question]:
    """A balanced set of yes/no questions (existence, colour, number, relation) about a scene."""
    qs: list[Question] = []
    present = scene.kinds
    # existence: every present object (yes) and as many absent ones (no), prior partners first
    absent = scene.prior_partners_absent()
    others = [k for k in KINDS if k not in present and k not in absent]
    rng.shuffle(others)
    absent = (absent + others)[: len(present)]
    for k in present:
        qs.append(Question("discriminative-hallucination", f"Is there a {k} in this image?",
                           "yes", k))
    for k in absent:
        qs.append(Question("discriminative-hallucination", f"Is there a {k} in this image?",
                           "no", k))
    for o in scene.objects:
        verb, noun = _is_are(o)
        # colour: the true one, and a wrong one (the typical colour when it is wrong)
        typical = OBJECTS[o.kind][1]
        wrong = typical if typical != o.color else rng.choice([c for c in COLORS if c != o.color])
        col = [(o.color, "yes"), (wrong, "no")]
        rng.shuffle(col)
        for c, ans in col[:1] if rng.random() < 0.5 else col:
            qs.append(Question("discriminative-attribute-state",
                               f"{verb.capitalize()} the {noun} {c} in this image?", ans, o.kind))
        # number
        n = rng.choice((1, 2, 3))
        ans = "yes" if n == o.count else "no"
        if n == 1:
            q = f"Is there only one {o.kind} in this image?"
        else:
            q = f"Are there {NUMBER_WORDS[n]} {OBJECTS[o.kind][0]} in this image?"
        qs.append(Question("discriminative-attribute-number", q, ans, o.kind))
    # relation
    objs = list(scene.objects)
    for i, a in enumerate(objs):
        for b in objs[i + 1:]:
            rel = relation_of(a, b)
            if rel is None:
                continue
            x, y = (a, b) if rng.random() < 0.5 else (b, a)
            rel = relation_of(x, y)
            ask, ans = (rel, "yes") if rng.random() < 0.5 else (_OPPOSITE[rel], "no")
            verb, noun = _is_are(x)
            _, noun_y = _is_are(y)
            query = f"{verb.capitalize()} the {noun} {ask} the {noun_y}?"
            qs.append(Question("discriminative-relation", query, ans, x.kind))
    return qs


def vqa_questions(scene: Scene) -> list[Question]:
    """Single-word questions (colour, number, position) for every object of a scene."""
    qs = []
    for o in scene.objects:
        verb, noun = _is_are(o)
        qs.append(Question("vqa-color", f"What color {verb} the {noun}?", o.color, o.kind))
        qs.append(Question("vqa-number", f"How many {OBJECTS[o.kind][0]} are there?",
                           NUMBER_WORDS[o.count], o.kind))
        qs.append(Question("vqa-position", f"Where {verb} the {noun}?", o.position, o.kind))
    return qs


CAPTION_PROMPTS = ("Describe this image.", "Please describe this image in detail.")
"""Captioning prompts: AMBER's generative query and the paper's prompt."""


def vocabulary() -> list[str]:
    """Every word the captions, questions and answers can use (sorted, deterministic)."""
    words: set[str] = set()
    words.update(KINDS)
    words.update(v[0] for v in OBJECTS.values())
    words.update(COLORS)
    words.update(POSITIONS)
    words.update(NUMBER_WORDS.values())
    for text in list(POSITION_PHRASE.values()) + list(_OPPOSITE) + list(CAPTION_PROMPTS) + [
        "a and , .?", "is are there in this image only what color how many where the",
        "yes no user assistant :",
    ]:
        words.update(split_words(text))
    return sorted(words)


def split_words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks, the way the scene tokenizer splits text."""
    return re.findall(r"\w+|[^\w\s]", text.lower())
