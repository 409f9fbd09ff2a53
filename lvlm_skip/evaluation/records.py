"""The answers of an evaluation run: one JSON line per (variant, item), kept across crashes.

Files in a run folder:

* ``responses.jsonl``: the answers of single-process runs, and the merged answers of every run;
* ``responses.rank{R}.jsonl``: the answers of process ``R`` of a sharded run, until the merge.

Guarantees (tested by killing runs with SIGKILL at random points, ``tests/test_fault_injection.py``):

* An answer is appended with one ``write`` and ``fsync``'ed before the next item starts, so a
  crash loses at most the answer being written.
* Opening a file for appending repairs its end first: a last line that is a complete record but
  lacks its newline gets one (the next record must not be glued to it); a truncated or garbage
  last line is cut off with a warning. A finished record is never lost, and a line holding
  several glued records (a writer that did not end a record with its newline) is read as those records.
* The merge writes a new file, ``fsync``'s it and renames it over ``responses.jsonl`` before it
  deletes the rank files, so a crash at any point of it leaves every answer in some file; the
  next run reads them all and drops the duplicates.
* For a key present several times the first answer wins, and an error is superseded by any later
  record, so errored items are retried by a rerun.

Only one run writes a folder at a time (:mod:`lvlm_skip.evaluation.lock`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Union

logger = logging.getLogger(__name__)

RESPONSES_FILE = "responses.jsonl"
ItemId = Union[int, str]
#: ``(variant label, item id)``: what a record answers.
Key = tuple[str, ItemId]


@dataclass(frozen=True)
class AnswerRecord:
    """One generated answer, or why there is none.

    Attributes:
        variant: The variant label (the spec as written, e.g. ``"skip2:online"``).
        id: The item id (as in the data file: an int or a string).
        response: The generated text; ``None`` for an error record.
        new_tokens: Generated tokens.
        seconds: Wall time of ``generate``, in seconds.
        layers_skipped: Mean decoder layers skipped per decoding step (``None``: not recorded).
        error: Why there is no answer (an unreadable image, a path outside ``--image-dir``);
            ``None`` for an answer.
    """

    variant: str
    id: ItemId
    response: str | None = None
    new_tokens: int = 0
    seconds: float = 0.0
    layers_skipped: float | None = None
    error: str | None = None

    @property
    def key(self) -> Key:
        return (self.variant, self.id)

    @property
    def ok(self) -> bool:
        """True for an answer, False for an error record."""
        return self.error is None

    def to_line(self) -> bytes:
        """The record as one JSON line (fields that are ``None`` are left out), newline included."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: Any) -> "AnswerRecord":
        """A record from its parsed JSON line.

        Keys this version does not know are ignored (a record is never dropped for carrying more).

        Raises:
            ValueError: ``data`` is not a record (no string ``variant``, no int/str ``id``, neither a
                string ``response`` nor a string ``error``).
        """
        if not isinstance(data, dict):
            raise ValueError("not an object")
        item_id = data.get("id")
        if not isinstance(data.get("variant"), str) or isinstance(item_id, bool) or not isinstance(item_id, (int, str)):
            raise ValueError("not an answer record")
        if not isinstance(data.get("response"), str) and not isinstance(data.get("error"), str):
            raise ValueError("an answer record needs a response or an error")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def shard_file(folder: Path, rank: int) -> Path:
    """The answers file of process ``rank`` of a sharded run."""
    return Path(folder) / f"responses.rank{rank}.jsonl"


def answer_files(folder: Path) -> list[Path]:
    """Every answers file in ``folder``: ``responses.jsonl`` first, then the rank files by rank."""
    folder = Path(folder)
    shards = sorted(folder.glob("responses.rank*.jsonl"), key=lambda p: (len(p.name), p.name))
    merged = folder / RESPONSES_FILE
    return ([merged] if merged.is_file() else []) + shards


# ------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Scan:
    records: list[AnswerRecord]
    good_end: int  # byte offset after the last byte worth keeping
    size: int
    needs_newline: bool  # the kept part ends with a complete record but no newline
    clean: bool  # nothing skipped, dropped or repaired


def _parse(text: str) -> tuple[list[AnswerRecord], int, bool]:
    """Records at the start of ``text`` (several if glued): ``(records, characters consumed, all parsed)``."""
    decoder = json.JSONDecoder()
    records: list[AnswerRecord] = []
    position = consumed = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return records, len(text), True
        try:
            value, position = decoder.raw_decode(text, position)
            records.append(AnswerRecord.from_json(value))
        except ValueError:
            return records, consumed, False
        consumed = position


def _scan(path: Path) -> _Scan:
    raw = path.read_bytes()
    records: list[AnswerRecord] = []
    clean, offset, good_end, needs_newline = True, 0, 0, False
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        last = number == len(lines)  # the bytes after the final newline (empty for a clean file)
        end = offset + len(line) + (0 if last else 1)
        if line.strip():
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            parsed, consumed, complete = _parse(text) if text else ([], 0, False)
            records += parsed
            if len(parsed) > 1:
                clean = False
                logger.warning("%s: line %d held %d glued records; reading them apart", path, number, len(parsed))
            if not complete:
                clean = False
                if last:
                    kept = len(text[:consumed].encode("utf-8"))
                    logger.warning("%s: dropping an incomplete last line (%d bytes)%s", path, len(line) - kept,
                                   f" after {len(parsed)} complete record(s)" if parsed else "")
                    good_end, needs_newline = offset + kept, bool(parsed)
                else:
                    logger.warning("%s: skipping malformed line %d", path, number)
                    good_end = end
            else:
                good_end = end
                needs_newline = last
                clean = clean and not last
        else:
            good_end = end if not last else good_end
        offset = end
    return _Scan(records=records, good_end=good_end, size=len(raw), needs_newline=needs_newline, clean=clean)


def read_answers(path: Path, repair: bool = False) -> list[AnswerRecord]:
    """The records of an answers file, tolerating a damaged end (see the module docstring).

    Args:
        path: The file; a missing file reads as empty.
        repair: Also fix the file's end so that appends start on a fresh line: cut an incomplete
            last line off, and add the missing newline after a complete one. Only the file's
            writer may repair it.

    Returns:
        The records in file order (duplicates kept).
    """
    path = Path(path)
    if not path.is_file():
        return []
    scan = _scan(path)
    if repair and (scan.good_end < scan.size or scan.needs_newline):
        with path.open("r+b") as handle:
            handle.truncate(scan.good_end)
            if scan.needs_newline:
                handle.seek(scan.good_end)
                handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
    return scan.records


def prefer(old: AnswerRecord | None, new: AnswerRecord) -> AnswerRecord:
    """Which of two records of one key stands: the first answer; an error yields to any later record."""
    if old is None or not old.ok:
        return new
    return old


def resolve(records: Iterable[AnswerRecord]) -> tuple[dict[Key, AnswerRecord], int]:
    """One record per key (by :func:`prefer`), in first-seen order, and the number of extra records."""
    chosen: dict[Key, AnswerRecord] = {}
    extra = 0
    for record in records:
        extra += record.key in chosen
        chosen[record.key] = prefer(chosen.get(record.key), record)
    return chosen, extra


# ------------------------------------------------------------------------------------- writing


class AnswerStore:
    """The answers file of one process, and every answer already in its folder.

    Args:
        folder: The run folder (it exists, and this process holds the run, see
            :class:`~lvlm_skip.evaluation.lock.FolderLock`).
        rank: This process's rank.
        world: Number of processes: 1 writes ``responses.jsonl``, more write ``responses.rank{R}.jsonl``.
    """

    def __init__(self, folder: Path, rank: int = 0, world: int = 1) -> None:
        self.folder = Path(folder)
        self.path = self.folder / RESPONSES_FILE if world == 1 else shard_file(self.folder, rank)
        records: list[AnswerRecord] = []
        for file in answer_files(self.folder):
            records += read_answers(file, repair=file == self.path)
        self._records, _ = resolve(records)
        self._fd: int | None = None

    def answered(self) -> set[Key]:
        """The keys that have an answer (error records are not answers: they are retried)."""
        return {key for key, record in self._records.items() if record.ok}

    def records(self) -> list[AnswerRecord]:
        """One record per key."""
        return list(self._records.values())

    def append(self, record: AnswerRecord) -> None:
        """Append ``record`` durably: one ``write`` of the whole line, then ``fsync``."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        line = record.to_line()
        written = os.write(self._fd, line)
        if written != len(line):  # a regular file takes the whole line, or the disk is full
            raise OSError(f"short write to {self.path} ({written} of {len(line)} bytes)")
        os.fsync(self._fd)
        self._records[record.key] = prefer(self._records.get(record.key), record)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "AnswerStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class MergeResult:
    """What :func:`merge_answers` found.

    Attributes:
        records: The record of every expected key that has one, in expected order.
        missing: Expected keys without a record.
        duplicates: Extra records of a key that were dropped.
    """

    records: tuple[AnswerRecord, ...]
    missing: tuple[Key, ...]
    duplicates: int


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _rewrite(folder: Path, records: Iterable[AnswerRecord], shards: Sequence[Path]) -> None:
    """Write ``records`` as the new ``responses.jsonl`` (atomically), then delete ``shards``."""
    target = folder / RESPONSES_FILE
    temporary = folder / (RESPONSES_FILE + ".tmp")
    with temporary.open("wb") as handle:
        for record in records:
            handle.write(record.to_line())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    _fsync_folder(folder)
    for shard in shards:
        shard.unlink()


def merge_answers(folder: Path, expected: Iterable[Key], drop_variants: Iterable[str] = ()) -> MergeResult:
    """Merge every answers file of ``folder`` into ``responses.jsonl``, one record per key.

    Records of keys that are not expected (other variants, items beyond ``--limit``) are kept,
    after the expected ones. The file is rewritten only when something changes (rank files,
    duplicates, damaged lines, dropped variants). Run it only while holding the folder's lock.

    Args:
        folder: The run folder.
        expected: The keys the run should have, in report order.
        drop_variants: Variant labels whose records are discarded (``--overwrite``).

    Returns:
        The expected records, the missing keys and the number of duplicates dropped.
    """
    folder = Path(folder)
    drop = set(drop_variants)
    files = answer_files(folder)
    shards = [f for f in files if f.name != RESPONSES_FILE]
    records: list[AnswerRecord] = []
    clean = True
    for file in files:
        scan = _scan(file)
        records += scan.records
        clean = clean and scan.clean and scan.good_end == scan.size
    chosen, duplicates = resolve(r for r in records if r.variant not in drop)
    expected = list(dict.fromkeys(expected))
    if shards or duplicates or not clean or any(r.variant in drop for r in records):
        ordered = [chosen[key] for key in expected if key in chosen]
        wanted = set(expected)
        ordered += [record for key, record in chosen.items() if key not in wanted]
        _rewrite(folder, ordered, shards)
    stale = folder / (RESPONSES_FILE + ".tmp")  # left by a merge that was killed before its rename
    if stale.exists():
        stale.unlink()
    if duplicates:
        logger.info("merge: dropped %d duplicate record(s)", duplicates)
    return MergeResult(
        records=tuple(chosen[key] for key in expected if key in chosen),
        missing=tuple(key for key in expected if key not in chosen),
        duplicates=duplicates,
    )
