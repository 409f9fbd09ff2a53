"""A tiny AMBER-format folder (8 annotations, 4 images) for the runner and integrity tests."""

from __future__ import annotations

import json
from pathlib import Path

ANNOTATIONS = [
    {"id": 1, "type": "generative", "truth": ["dog", "grass"], "hallu": ["cat"]},
    {"id": 2, "type": "generative", "truth": ["man"], "hallu": ["car"]},
    {"id": 3, "type": "discriminative-hallucination", "truth": "yes"},
    {"id": 4, "type": "discriminative-attribute-state", "truth": "no"},
    {"id": 5, "type": "discriminative-attribute-number", "truth": "yes"},
    {"id": 6, "type": "discriminative-attribute-action", "truth": "no"},
    {"id": 7, "type": "discriminative-relation", "truth": "yes"},
    {"id": 8, "type": "relation", "truth": "no"},
]
RELATION = {"dog": ["puppy"], "grass": ["lawn"], "cat": [], "man": ["person"], "car": [], "sky": []}
QUERY_FILES = {"all": list(range(1, 9)), "generative": [1, 2], "discriminative": [3, 4, 5, 6, 7, 8],
               "discriminative-existence": [3], "discriminative-attribute": [4, 5, 6], "discriminative-relation": [7, 8]}


def write_amber(root: Path, images: Path, annotations: list[dict] = ANNOTATIONS) -> dict[str, Path]:
    """Write the AMBER folder ``root`` and 4 images ``AMBER_1..4.png`` (8x8, red = 40 * i) into ``images``."""
    from PIL import Image

    (root / "query").mkdir(parents=True)
    (root / "annotations.json").write_text(json.dumps(annotations))
    (root / "relation.json").write_text(json.dumps(RELATION))
    (root / "safe_words.txt").write_text("sky\n")
    queries = {a["id"]: {"id": a["id"], "image": f"AMBER_{(a['id'] - 1) % 4 + 1}.png",
                         "query": "Describe this image." if a["type"] == "generative" else f"Is there thing {a['id']}?"}
               for a in annotations}
    for name, ids in QUERY_FILES.items():
        (root / "query" / f"query_{name}.json").write_text(json.dumps([queries[i] for i in ids if i in queries]))
    images.mkdir(parents=True, exist_ok=True)
    for i in range(1, 5):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(images / f"AMBER_{i}.png")
    return {"root": root, "images": images}
