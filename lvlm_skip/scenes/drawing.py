"""Drawing a scene: one simple shape per object kind on a light, textured background.

All sizes are pixels of the ``IMAGE_SIZE`` square image; objects sit in the cells of a 3x3 grid
(:data:`~lvlm_skip.scenes.catalogue.POSITION_CELL`). Random choices (jitter, texture step) come
from the ``random.Random`` passed in, so a scene is a pure function of its seed.
"""

from __future__ import annotations

import dataclasses
import math
import random

from PIL import Image, ImageDraw

from .catalogue import BACKGROUNDS, COLORS, IMAGE_SIZE, POSITION_CELL
from .scene import SceneObject


def draw_shape(d: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, s: float,
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


def draw_background(rng: random.Random, name: str, texture: str) -> Image.Image:
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


def layout(rng: random.Random, obj: SceneObject) -> list[tuple[float, float, float]]:
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
    img = draw_background(rng, background, texture)
    d = ImageDraw.Draw(img)
    out = []
    for obj in objects:
        boxes = []
        for cx, cy, s in layout(rng, obj):
            draw_shape(d, obj.kind, cx, cy, s, COLORS[obj.color], BACKGROUNDS[background])
            boxes.append((round(cx - s / 2), round(cy - s / 2), round(s), round(s)))
        out.append(dataclasses.replace(obj, boxes=tuple(boxes)))
    return img, out
