"""Benchmarks as the Hugging Face hub ships them, read offline with ``datasets``: POPE and COCO captions.

* **POPE**, lmms-lab/POPE's schema: ``question_id`` (string), ``question``, ``answer`` (``yes`` /
  ``no``), ``image`` (an embedded image), ``category`` (the split: ``random``, ``popular``,
  ``adversarial``), and ``id``, ``image_source``.
* **COCO captions**, lmms-eval's COCO-Caption2017 schema: ``question_id`` (the image's file name),
  ``id`` (the image id), ``answer`` (the reference captions), ``image`` (embedded).

:func:`open_hub_dataset` takes what a user has on disk: a ``.parquet`` file, a folder of them (a
hub snapshot such as ``~/.cache/huggingface/hub/datasets--lmms-lab--POPE/snapshots/<rev>``, searched
recursively, or a config's folder such as ``Full/``), or a ``Dataset.save_to_disk`` folder. It
reads local files only (``load_dataset("parquet", data_files=...)``, ``load_from_disk``) and never
downloads. The files it read are returned, so that a run's fingerprint holds their digests.

Every problem is a one-line :class:`HubDataError` naming the path: nothing there, a file
``datasets`` cannot read, a missing column, a bad label, an image that cannot be decoded (that
one per item: the runner makes it an error record). Needs ``datasets`` (the ``eval`` extra).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import InputError, one_line
from .json_files import DataFileError

#: The columns each schema needs.
POPE_COLUMNS = ("question_id", "question", "answer", "image")
CAPTION_COLUMNS = ("question_id", "id", "answer", "image")


class HubDataError(DataFileError):
    """A hub-format dataset is missing, unreadable, or not in the expected schema."""


@dataclass
class HubDataset:
    """A dataset read from local files.

    Attributes:
        rows: The ``datasets.Dataset`` (images left undecoded: ``{"bytes", "path"}``).
        files: The files it was read from, in a stable order (the data identity of a run).
        source: The path the user gave.
    """

    rows: Any
    files: list[Path]
    source: Path

    def data_files(self) -> dict[str, Path]:
        """The files read, by role ``dataset_<i>``: a hub task's :attr:`~lvlm_skip.evaluation.task.EvalTask.data_files`."""
        return {f"dataset_{i}": path for i, path in enumerate(self.files)}

    def image(self, index: int):
        """Row ``index``'s image as an RGB PIL image.

        Raises:
            InputError: the bytes are not an image (one line, naming the row).
        """
        cell = self.rows[index]["image"]
        try:
            if isinstance(cell, dict) and cell.get("bytes") is not None:
                return Image.open(io.BytesIO(cell["bytes"])).convert("RGB")
            if isinstance(cell, dict) and cell.get("path"):
                return Image.open(cell["path"]).convert("RGB")
            if hasattr(cell, "convert"):
                return cell.convert("RGB")
        except Exception as error:  # noqa: BLE001 - PIL raises several types for a corrupt image
            raise InputError(f"{self.source}: row {index}: the image cannot be decoded ({one_line(error)})") from None
        raise InputError(f"{self.source}: row {index}: no image in the 'image' column")


def open_hub_dataset(path: str | Path, columns: tuple[str, ...]) -> HubDataset:
    """The dataset at ``path`` (see the module docstring), checked to have ``columns``.

    Raises:
        HubDataError: nothing readable at ``path``, or a column missing (one line).
    """
    try:
        import datasets  # the eval extra, optional
    except ImportError:
        raise HubDataError("reading a hub-format dataset needs `datasets`: pip install -e .[eval]") from None
    source = Path(path)
    if not source.exists():
        raise HubDataError(f"{source}: no such file or folder")
    were_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # one bar per file would only fill the log
    try:
        rows, files = _read(datasets, source)
    except HubDataError:
        raise
    except Exception as error:  # noqa: BLE001 - pyarrow and datasets raise many types for a bad file
        raise HubDataError(f"{source}: not a readable dataset ({type(error).__name__}: {one_line(error)})") from None
    finally:
        if not were_disabled:
            datasets.enable_progress_bars()
    missing = [c for c in columns if c not in rows.column_names]
    if missing:
        raise HubDataError(f"{source}: missing column(s) {', '.join(missing)} (it has {', '.join(rows.column_names)})")
    if "image" in rows.column_names and isinstance(rows.features.get("image"), datasets.Image):
        rows = rows.cast_column("image", datasets.Image(decode=False))  # decoded one row at a time, when asked
    return HubDataset(rows=rows, files=files, source=source)


def _read(datasets, source: Path):
    if source.is_dir() and (source / "state.json").is_file() and (source / "dataset_info.json").is_file():
        rows = datasets.load_from_disk(str(source))
        if isinstance(rows, datasets.DatasetDict):
            rows = datasets.concatenate_datasets([rows[name] for name in sorted(rows)])
        files = sorted(source.glob("*.arrow"))
        return rows, files
    if source.is_file():
        if source.suffix != ".parquet":
            raise HubDataError(f"{source}: expected a .parquet file, a folder of them, or a save_to_disk folder")
        files = [source]
    else:
        files = sorted(p for p in source.rglob("*.parquet") if p.is_file())
        if not files:
            raise HubDataError(f"{source}: no .parquet file in this folder (and it is not a save_to_disk folder)")
    rows = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    return rows, [f.resolve() for f in files]


@dataclass(frozen=True)
class HubPopeQuestion:
    """One POPE question of a hub dataset: its row, split, id, question and label."""

    row: int
    split: str
    question_id: str
    question: str
    label: str
    image_name: str


def pope_questions(data: HubDataset) -> list[HubPopeQuestion]:
    """Every question of a POPE dataset in row order; the split is ``category`` (``test`` without one).

    Raises:
        HubDataError: an answer other than yes / no, an empty question, or a question id repeated in a split.
    """
    table = data.rows.select_columns([c for c in ("question_id", "question", "answer", "category", "image_source")
                                      if c in data.rows.column_names]).to_dict()
    out, seen = [], set()
    for i, question_id in enumerate(table["question_id"]):
        split = str(table["category"][i]) if "category" in table else "test"
        label = str(table["answer"][i]).strip().lower()
        if label not in ("yes", "no"):
            raise HubDataError(f"{data.source}: row {i}: 'answer' must be yes or no, got {table['answer'][i]!r}")
        question = table["question"][i]
        if not isinstance(question, str) or not question.strip():
            raise HubDataError(f"{data.source}: row {i}: 'question' must be a non-empty string, got {question!r}")
        if (split, str(question_id)) in seen:
            raise HubDataError(f"{data.source}: row {i}: question_id {question_id!r} repeats in split {split!r}")
        seen.add((split, str(question_id)))
        source = table["image_source"][i] if "image_source" in table else None
        out.append(HubPopeQuestion(row=i, split=split, question_id=str(question_id), question=question, label=label,
                                   image_name=str(source) if source else f"row{i}"))
    if not out:
        raise HubDataError(f"{data.source}: no question")
    return out


@dataclass(frozen=True)
class HubCaptionImage:
    """One image of a caption dataset: its row, image id, file name and reference captions."""

    row: int
    image_id: Any
    file_name: str
    references: tuple[str, ...]


def caption_images(data: HubDataset) -> list[HubCaptionImage]:
    """Every image of a COCO-Caption2017-schema dataset, in row order.

    Raises:
        HubDataError: an image id repeated, or references that are not a list of strings.
    """
    table = data.rows.select_columns(["question_id", "id", "answer"]).to_dict()
    out, seen = [], set()
    for i, image_id in enumerate(table["id"]):
        refs = table["answer"][i]
        if refs is None:
            refs = []
        if isinstance(refs, str) or not all(isinstance(r, str) for r in refs):
            raise HubDataError(f"{data.source}: row {i}: 'answer' must be a list of reference captions, got {refs!r}")
        if image_id in seen:
            raise HubDataError(f"{data.source}: row {i}: image id {image_id!r} repeats")
        seen.add(image_id)
        out.append(HubCaptionImage(row=i, image_id=image_id, file_name=str(table["question_id"][i]), references=tuple(refs)))
    if not out:
        raise HubDataError(f"{data.source}: no image")
    return out
