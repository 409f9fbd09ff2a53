"""A made-up POPE folder: three 8x8 images and the three splits, six questions each, plus a fake model.

Image ``A.png`` (red) holds a dog and a cat, ``B.png`` (green) a car, ``C.png`` (blue) a tree.
Each split asks, per image, about one present object (yes) and one absent object (no), in POPE's
order (yes, no, yes, no, ...); the absent objects are "random" (boat, cat, kite), "popular"
(person, three times) and "adversarial" (mouse, road, bird).
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from lvlm_skip.evaluation.generation import Generation

COLOURS = {"A.png": (200, 0, 0), "B.png": (0, 200, 0), "C.png": (0, 0, 200)}
TRUTH = {"A.png": {"dog", "cat"}, "B.png": {"car"}, "C.png": {"tree"}}
SPLITS = {
    "random": [("A.png", "dog", "yes"), ("A.png", "boat", "no"), ("B.png", "car", "yes"), ("B.png", "cat", "no"),
               ("C.png", "tree", "yes"), ("C.png", "kite", "no")],
    "popular": [("A.png", "dog", "yes"), ("A.png", "person", "no"), ("B.png", "car", "yes"), ("B.png", "person", "no"),
                ("C.png", "tree", "yes"), ("C.png", "person", "no")],
    "adversarial": [("A.png", "cat", "yes"), ("A.png", "mouse", "no"), ("B.png", "car", "yes"), ("B.png", "road", "no"),
                    ("C.png", "tree", "yes"), ("C.png", "bird", "no")],
}
#: What the fake model wrongly sees (as the none variant): it hallucinates these everywhere.
HALLUCINATED = {"person", "mouse", "bird"}


def question(kind: str) -> str:
    return f"Is there {'an' if kind[0] in 'aeiou' else 'a'} {kind} in the image?"


def pope_lines(split: str) -> list[dict]:
    return [{"question_id": i, "image": image, "text": question(kind), "label": label}
            for i, (image, kind, label) in enumerate(SPLITS[split], 1)]


def write_pope(root: Path, images: Path, dataset: str = "fixture") -> dict[str, Path]:
    """Write ``<root>/<dataset>_pope_<split>.json`` and the images; returns ``{"root", "images", split: file}``."""
    root.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    for name, colour in COLOURS.items():
        Image.new("RGB", (8, 8), colour).save(images / name)
    files: dict[str, Path] = {"root": root, "images": images}
    for split in SPLITS:
        path = root / f"{dataset}_pope_{split}.json"
        path.write_text("".join(json.dumps(line) + "\n" for line in pope_lines(split)))
        files[split] = path
    return files


def image_name(image) -> str:
    """Which fixture image a PIL image is, by its colour."""
    pixel = image.convert("RGB").getpixel((0, 0))
    return next(name for name, colour in COLOURS.items() if colour == pixel)


class FakePopeModel:
    """Answers from the truth; the ``none`` variant also says yes to :data:`HALLUCINATED` objects.

    Records every ``(variant, prompt)``; raises ``KeyboardInterrupt`` once ``interrupt_after`` calls are done.
    """

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.interrupt_after = interrupt_after

    def __call__(self, image, prompt: str, label: str) -> Generation:
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append((label, prompt))
        kind = prompt.split(" in the image?")[0].split()[-1]
        seen = TRUTH[image_name(image)] | (HALLUCINATED if label == "none" else set())
        text = "Yes, there is." if kind in seen else "No, there is not."
        return Generation(text, 4, 0.02 if label == "none" else 0.04, 0.0)
