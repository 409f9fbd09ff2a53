"""The scene benchmark's POPE and caption splits in the schemas the hub ships (parquet, images embedded).

* ``hub/pope/<split>.parquet``: lmms-lab/POPE's schema (``id``, ``question_id`` (string), ``question``,
  ``answer``, ``image_source``, ``image``, ``category``), one file per POPE split as its ``Full`` config.
* ``hub/coco_caption/test.parquet``: lmms-eval's COCO-Caption2017 schema (``question_id`` the file
  name, ``id``, ``answer`` the reference captions, ``image``).

The image bytes are written into the parquet (``datasets`` 5.2's ``to_parquet`` would keep only the
paths of file-backed images), so a file is self-contained. Needs ``datasets`` (the ``eval`` extra).
"""

from __future__ import annotations

import json
from pathlib import Path


def _image(path: Path) -> dict:
    return {"bytes": path.read_bytes(), "path": path.name}


def write_hub_splits(benchmark: str | Path) -> dict[str, Path]:
    """Write ``benchmark/hub/...`` from a folder that ``lvlm-skip scenes`` wrote; returns name -> file.

    ``datasets``' own progress bars (one per file, "Creating parquet from Arrow format") are off
    while it writes: each file is one batch, so they only fill the log.
    """
    import datasets  # the eval extra, optional

    were_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        return _write_hub_splits(Path(benchmark))
    finally:
        if not were_disabled:
            datasets.enable_progress_bars()


def _write_hub_splits(root: Path) -> dict[str, Path]:
    from datasets import Dataset, Features, Image, Sequence, Value  # the eval extra, optional

    images = root / "images"
    written = {}
    pope_features = Features({"id": Value("string"), "question_id": Value("string"), "question": Value("string"),
                              "answer": Value("string"), "image_source": Value("string"), "image": Image(),
                              "category": Value("string")})
    for path in sorted((root / "pope").glob("*_pope_*.json")):
        split = path.stem.rsplit("_pope_", 1)[1]
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        data = {"id": [str(i) for i in range(len(rows))], "question_id": [str(r["question_id"]) for r in rows],
                "question": [r["text"] for r in rows], "answer": [r["label"] for r in rows],
                "image_source": [Path(r["image"]).stem for r in rows],
                "image": [_image(images / r["image"]) for r in rows], "category": [split] * len(rows)}
        out = root / "hub" / "pope" / f"{split}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_dict(data, features=pope_features).to_parquet(str(out))
        written[f"pope_{split}"] = out
    captions = json.loads((root / "captions.json").read_text())
    refs: dict = {}
    for ann in captions["annotations"]:
        refs.setdefault(ann["image_id"], []).append(ann["caption"])
    imgs = captions["images"]
    data = {"question_id": [im["file_name"] for im in imgs], "id": [im["id"] for im in imgs],
            "answer": [refs.get(im["id"], []) for im in imgs], "image": [_image(images / im["file_name"]) for im in imgs]}
    features = Features({"question_id": Value("string"), "id": Value("int64"), "answer": Sequence(Value("string")),
                         "image": Image()})
    out = root / "hub" / "coco_caption" / "test.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(data, features=features).to_parquet(str(out))
    written["coco_caption"] = out
    return written
