"""Reading POPE question files and finding a folder's splits.

A POPE question file (Li et al., EMNLP 2023) is JSON lines, one question a line::

    {"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?", "label": "yes"}

POPE names its files ``<dataset>_pope_<split>.json`` with the splits ``random``, ``popular`` and
``adversarial`` (how the absent objects were drawn), e.g. ``coco_pope_random.json``, and the scene
benchmark writes ``scenes_pope_<split>.json`` the same way. Checks, each failure one
:class:`PopeFormatError` line naming the file (and the line): a missing or unreadable file, a line
that is not JSON or not an object, a missing key, a ``question_id`` that is not an int or a non-empty
string, or that repeats, an ``image`` or ``text`` that is not a non-empty string, a ``label`` other than
exactly ``"yes"`` / ``"no"``, a file without questions. Other keys are allowed and ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .json_files import DataFileError, read_numbered_json_lines

#: The labels of POPE's question files; "yes" is the positive class.
LABELS = ("yes", "no")

#: POPE's splits, in the order of its paper's tables.
POPE_SPLITS = ("random", "popular", "adversarial")
_SPLIT_FILE = re.compile(r"^(?P<dataset>.+)_pope_(?P<split>[^/]+)\.json$")


class PopeFormatError(DataFileError):
    """A POPE question file is missing, or a line of it is malformed."""


@dataclass(frozen=True)
class PopeQuestion:
    """One line of a POPE question file.

    Attributes:
        question_id: As in the file (an int in POPE's files).
        image: The image's name relative to the image folder.
        text: The question, e.g. ``"Is there a snowboard in the image?"``.
        label: ``"yes"`` (the object is in the image) or ``"no"``.
        line: The line of the file it was read from (1-based).
    """

    question_id: int | str
    image: str
    text: str
    label: str
    line: int = 0


def _question(value: Any, where: str, number: int) -> PopeQuestion:
    if not isinstance(value, dict):
        raise PopeFormatError(f"{where}: expected a JSON object like {{\"question_id\", \"image\", \"text\", \"label\"}}")
    missing = [key for key in ("question_id", "image", "text", "label") if key not in value]
    if missing:
        raise PopeFormatError(f"{where}: missing {', '.join(repr(k) for k in missing)}")
    question_id = value["question_id"]
    if isinstance(question_id, bool) or not (isinstance(question_id, int) or (isinstance(question_id, str) and question_id)):
        raise PopeFormatError(f"{where}: 'question_id' must be an int or a non-empty string, got {question_id!r}")
    for key in ("image", "text"):
        if not isinstance(value[key], str) or not value[key].strip():
            raise PopeFormatError(f"{where}: {key!r} must be a non-empty string, got {value[key]!r}")
    if value["label"] not in LABELS:
        raise PopeFormatError(f"{where}: 'label' must be \"yes\" or \"no\", got {value['label']!r}")
    return PopeQuestion(question_id=question_id, image=value["image"], text=value["text"], label=value["label"],
                        line=number)


def read_pope_questions(path: str | Path) -> list[PopeQuestion]:
    """The questions of a POPE file, in file order, checked (see the module docstring).

    Raises:
        PopeFormatError: one line naming the file and, for a bad question, its line.
    """
    questions: list[PopeQuestion] = []
    first_line: dict[int | str, int] = {}
    for number, value in read_numbered_json_lines(path, PopeFormatError):
        where = f"{path}: line {number}"
        question = _question(value, where, number)
        if question.question_id in first_line:
            raise PopeFormatError(f"{where}: duplicate question_id {question.question_id!r} "
                                  f"(first on line {first_line[question.question_id]})")
        first_line[question.question_id] = number
        questions.append(question)
    if not questions:
        raise PopeFormatError(f"{path}: no questions")
    return questions


def split_name(path: str | Path) -> str:
    """The split a question file holds: ``<split>`` of ``<dataset>_pope_<split>.json``, else the file's stem."""
    match = _SPLIT_FILE.match(Path(path).name)
    return match.group("split") if match else Path(path).stem


def find_split_files(root: str | Path, splits: tuple[str, ...] = POPE_SPLITS, dataset: str | None = None) -> dict[str, Path]:
    """The question file of each split in the folder ``root``: ``<dataset>_pope_<split>.json``.

    Args:
        root: The folder (POPE's ``output/coco``, or a scene benchmark's ``pope``).
        splits: The splits wanted, in report order.
        dataset: The file prefix (``coco``, ``aokvqa``, ``gqa``, ``scenes``); by default the one
            prefix that the folder's files of those splits share.

    Returns:
        Split -> file, in the order of ``splits``.

    Raises:
        PopeFormatError: ``root`` is not a folder; a split's file is missing; without ``dataset``,
            several datasets in the folder (the message lists them).
    """
    folder = Path(root)
    if not folder.is_dir():
        raise PopeFormatError(f"{folder}: not a folder (expected POPE question files <dataset>_pope_<split>.json)")
    if dataset is None:
        found = sorted({m.group("dataset") for p in folder.glob("*_pope_*.json")
                        if (m := _SPLIT_FILE.match(p.name)) and m.group("split") in splits})
        if len(found) > 1:
            raise PopeFormatError(f"{folder}: question files of several datasets ({', '.join(found)}): choose one with --file-prefix")
        if not found:
            raise PopeFormatError(f"{folder}: no POPE question file <dataset>_pope_<split>.json for "
                                  f"{', '.join(splits)}")
        dataset = found[0]
    files = {split: folder / f"{dataset}_pope_{split}.json" for split in splits}
    for path in files.values():
        if not path.is_file():
            raise PopeFormatError(f"{path}: file not found")
    return files
