"""POPE question files for exported scenes: random, popular and adversarial absent objects.

POPE (Li et al., EMNLP 2023) asks "Is there a <object> in the image?" about objects that are in
the image (label ``yes``) and as many that are not (label ``no``); its three splits differ only in
how the absent objects are drawn. For the scenes, per image with present kinds ``K`` (1 to 4, in
caption order), in the file order POPE uses (yes, no, yes, no, ...):

* **yes**: every present kind, so an image with ``k`` kinds gets ``k`` yes and ``k`` no questions
  (POPE takes 3 objects of images that have at least 3; every scene has at least 20 absent kinds,
  so every image is exactly half yes, half no, and images weigh by their number of kinds);
* **random**: ``k`` kinds drawn uniformly without replacement from the kinds not in the image;
* **popular**: the ``k`` kinds that are in the most images of the exported set, among those not in
  the image (ties: catalogue order);
* **adversarial**: first the prior partners of the present kinds that are absent (what the
  co-occurrence prior of :mod:`~lvlm_skip.scenes.catalogue` suggests, see
  :meth:`~lvlm_skip.scenes.scene.Scene.prior_partners_absent`), then the absent kinds that co-occur
  most often with the present ones in the exported set (summed over the present kinds; ties: more
  images, then catalogue order), as POPE ranks its co-occurring objects.

The question text is POPE's template, "Is there a {kind} in the image?", with "an" before a kind
that starts with a vowel, as in POPE's released files ("Is there an umbrella in the image?").
Lines are ``{"question_id", "image", "text", "label"}`` like POPE's, ids 1..n in file order.
Everything is a function of the scenes and the seed: the random split draws a scene's absent kinds
from its own ``random.Random`` seeded with ``"pope:{split}:{seed}:{index}"`` (the scene's split and
index), so a scene gets the same random questions in a larger export.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_args

from ..config import PopeSplit
from .catalogue import KINDS
from .scene import Scene

#: POPE's negative-sampling strategies, i.e. its splits.
POPE_STRATEGIES: tuple[str, ...] = get_args(PopeSplit)
#: File prefix: ``pope/scenes_pope_<strategy>.json``, as POPE's ``coco_pope_<strategy>.json``.
POPE_DATASET = "scenes"


def pope_question(kind: str) -> str:
    """POPE's question about ``kind``: "Is there a {kind} in the image?" ("an" before a vowel)."""
    article = "an" if kind[0] in "aeiou" else "a"
    return f"Is there {article} {kind} in the image?"


class _SetStatistics:
    """How often each kind appears, and co-occurs with each other kind, over the exported scenes."""

    def __init__(self, scenes: Sequence[Scene]) -> None:
        self.images = Counter(kind for scene in scenes for kind in set(scene.kinds))
        self.together: Counter = Counter()
        for scene in scenes:
            for a in set(scene.kinds):
                for b in set(scene.kinds) - {a}:
                    self.together[a, b] += 1

    def popular_order(self) -> list[str]:
        """Every kind, most images first (ties: catalogue order)."""
        return sorted(KINDS, key=lambda kind: (-self.images[kind], KINDS.index(kind)))

    def co_occurrence_order(self, present: Sequence[str], candidates: Sequence[str]) -> list[str]:
        """``candidates``, most co-occurrences with ``present`` first (ties: more images, then catalogue order)."""
        def key(kind: str) -> tuple[int, int, int]:
            return (-sum(self.together[p, kind] for p in present), -self.images[kind], KINDS.index(kind))

        return sorted(candidates, key=key)


def _absent(scene: Scene) -> list[str]:
    return [kind for kind in KINDS if kind not in scene.kinds]


def _random(scene: Scene, stats: _SetStatistics, seed: int) -> list[str]:
    rng = random.Random(f"pope:{scene.split}:{seed}:{scene.index}")
    return rng.sample(_absent(scene), len(scene.kinds))


def _popular(scene: Scene, stats: _SetStatistics, seed: int) -> list[str]:
    return [kind for kind in stats.popular_order() if kind not in scene.kinds][: len(scene.kinds)]


def _adversarial(scene: Scene, stats: _SetStatistics, seed: int) -> list[str]:
    partners = scene.prior_partners_absent()
    rest = [kind for kind in _absent(scene) if kind not in partners]
    return (partners + stats.co_occurrence_order(scene.kinds, rest))[: len(scene.kinds)]


_NEGATIVES: dict[str, Callable[[Scene, _SetStatistics, int], list[str]]] = {
    "random": _random, "popular": _popular, "adversarial": _adversarial,
}


def pope_questions(scenes: Sequence[Scene], seed: int, strategy: PopeSplit,
                   image_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The POPE question lines of one split for ``scenes`` (see the module docstring).

    Args:
        scenes: The exported scenes, in image order.
        seed: The export seed (only the random split uses it).
        strategy: ``random``, ``popular`` or ``adversarial``.
        image_names: The image file of each scene (default ``SCENE_<i>.png``, i from 1).

    Returns:
        ``{"question_id", "image", "text", "label"}`` dicts, ids from 1, yes and no alternating per image.
    """
    if strategy not in _NEGATIVES:
        raise ValueError(f"unknown POPE strategy {strategy!r}; expected one of {POPE_STRATEGIES}")
    names = list(image_names) if image_names is not None else [f"SCENE_{i}.png" for i in range(1, len(scenes) + 1)]
    if len(names) != len(scenes):
        raise ValueError(f"{len(names)} image names for {len(scenes)} scenes")
    stats = _SetStatistics(scenes)
    lines: list[dict[str, Any]] = []
    for scene, image in zip(scenes, names):
        negatives = _NEGATIVES[strategy](scene, stats, seed)
        if len(negatives) != len(scene.kinds) or set(negatives) & set(scene.kinds):
            raise RuntimeError(f"POPE {strategy}: the negatives {negatives} of a scene with {list(scene.kinds)} "
                               "are not one absent object per present one")
        for present, absent in zip(scene.kinds, negatives):
            for kind, label in ((present, "yes"), (absent, "no")):
                lines.append({"question_id": len(lines) + 1, "image": image, "text": pope_question(kind), "label": label})
    return lines


def write_pope_files(folder: str | Path, scenes: Sequence[Scene], seed: int,
                     image_names: Sequence[str] | None = None, dataset: str = POPE_DATASET) -> dict[str, Path]:
    """Write ``<folder>/<dataset>_pope_<strategy>.json`` (JSON lines) for the three strategies.

    Returns:
        Strategy -> file written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for strategy in POPE_STRATEGIES:
        path = folder / f"{dataset}_pope_{strategy}.json"
        lines = pope_questions(scenes, seed, strategy, image_names)
        path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        written[strategy] = path
    return written
