"""Loading COCO-format caption files for the caption benchmark.

Caption files follow the COCO captions layout, for any split (train/val/Karpathy
test, NoCaps, Flickr30k converted to COCO format, ...)::

    {"images": [{"id": 1, "file_name": "a.jpg"}, ...],
     "annotations": [{"image_id": 1, "caption": "A dog on a couch."}, ...]}

Every problem with an input file is reported as a :class:`CaptionDataError` (an
:class:`~lvlm_skip.errors.InputError`) whose message is a single line. The ground-truth objects
of CHAIR (COCO ``instances_*.json``) are read by the CHAIR module, through the caption task.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from .json_files import DataFileError, read_json

logger = logging.getLogger(__name__)


class CaptionDataError(DataFileError):
    """A caption/instance annotation file is missing, unreadable or malformed."""


@dataclass
class CaptionImage:
    """One image of a caption split.

    Attributes:
        image_id: COCO image id (as found in the file; usually an int).
        file_name: file name relative to the image directory.
        references: the reference captions of this image (may be empty for test splits).
    """

    image_id: Any
    file_name: str
    references: list[str] = field(default_factory=list)


@dataclass
class CaptionDataset:
    """A loaded caption split.

    Attributes:
        images: the images in file order.
        path: the annotation file it was read from.
    """

    images: list[CaptionImage]
    path: str = ""

    def references(self) -> dict[Any, list[str]]:
        """``{image_id: [reference caption, ...]}`` for images with references."""
        return {im.image_id: list(im.references) for im in self.images if im.references}

    def __len__(self) -> int:
        return len(self.images)


def load_captions(path: str | os.PathLike, limit: int | None = None) -> CaptionDataset:
    """Loads a COCO-format caption annotation file.

    Args:
        path: the JSON file (``images`` with ``id``/``file_name``; ``annotations``
            with ``image_id``/``caption``; ``annotations`` may be absent for test
            splits without references).
        limit: keep only the first ``limit`` images (in file order).

    Returns:
        The :class:`CaptionDataset`.

    Raises:
        CaptionDataError: missing/corrupt file, missing keys, duplicate image ids, or
            a caption referring to an unknown image.
    """
    data = read_json(path, CaptionDataError)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise CaptionDataError(f"{path}: not a COCO caption file (no 'images' list)")
    images: dict[Any, CaptionImage] = {}
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise CaptionDataError(f"{path}: images[{k}] lacks 'id' or 'file_name'")
        if isinstance(img["id"], bool) or not isinstance(img["id"], (int, str)):
            raise CaptionDataError(f"{path}: images[{k}] has an id that is neither an int nor a string")
        if img["id"] in images:
            raise CaptionDataError(f"{path}: duplicate image id {img['id']!r}")
        images[img["id"]] = CaptionImage(img["id"], str(img["file_name"]))
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise CaptionDataError(f"{path}: 'annotations' is not a list")
    for k, ann in enumerate(anns):
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            raise CaptionDataError(f"{path}: annotations[{k}] lacks 'image_id' or 'caption'")
        if ann["image_id"] not in images:
            raise CaptionDataError(f"{path}: annotations[{k}] refers to unknown image id "
                                   f"{ann['image_id']!r}")
        images[ann["image_id"]].references.append(str(ann["caption"]).strip())
    items = list(images.values())
    if limit is not None:
        items = items[: max(0, limit)]
    logger.info("loaded %d images (%d captions) from %s", len(items),
                sum(len(i.references) for i in items), path)
    return CaptionDataset(items, str(path))
