"""Sampling scenes per split: which kinds appear (co-occurrence prior) and in which colours (colour prior).

Scene ``i`` of a split is drawn from its own ``random.Random`` seeded with the string
``"{split}:{seed}:{i}"``, so scenes are reproducible one by one and different splits / seeds give
disjoint random streams.
"""

from __future__ import annotations

import random

from .catalogue import BACKGROUNDS, COLORS, OBJECTS, PAIRS, POSITIONS, PRIOR_P, SPLITS, TEXTURES
from .drawing import render
from .scene import Scene, SceneObject


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
