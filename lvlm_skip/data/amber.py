"""Loading and validation of an AMBER data folder.

An AMBER root (Wang et al., arXiv 2311.07397) is a folder holding::

    annotations.json   list of {id, type, truth, hallu?}; ids 1..1004 are generative
                       (truth/hallu are lists of object words), the rest are yes/no
                       questions (truth is "yes" or "no")
    query/query_*.json list of {id, image, query} prompts, one file per task
    relation.json      object word -> list of associated words
    safe_words.txt     one word per line; never counted as a hallucination

Any missing or malformed file raises :class:`AmberFormatError`, whose message is a
single line naming the file and what is wrong with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .json_files import DataFileError, read_json

#: ``--task`` value -> query file stem (the official ``--evaluation_type`` values).
TASK_FILES: dict[str, str] = {
    "a": "query_all",
    "g": "query_generative",
    "d": "query_discriminative",
    "de": "query_discriminative-existence",
    "da": "query_discriminative-attribute",
    "dr": "query_discriminative-relation",
}

GENERATIVE = "generative"
#: Every annotation type of the official release.
DISCRIMINATIVE_TYPES = (
    "discriminative-hallucination",
    "discriminative-attribute-state",
    "discriminative-attribute-number",
    "discriminative-attribute-action",
    "discriminative-relation",
    "relation",
)


class AmberFormatError(DataFileError):
    """An AMBER file is missing or does not have the expected format."""


@dataclass(frozen=True)
class AmberData:
    """A validated AMBER root.

    Attributes:
        root: The folder the data was read from.
        annotations: Annotation records keyed by integer id.
        relation: Object word -> associated words (``relation.json``).
        safe_words: Words never counted as hallucinations, in file order.
    """

    root: Path
    annotations: dict[int, dict[str, Any]]
    relation: dict[str, list[str]]
    safe_words: tuple[str, ...]

    def vocabulary(self) -> frozenset[str]:
        """Returns every object word the metric can ever match.

        The vocabulary is the union of annotation truth/hallu words of generative
        records, the keys and values of ``relation.json`` and the safe words.
        """
        words: set[str] = set(self.safe_words)
        for key, assoc in self.relation.items():
            words.add(key)
            words.update(assoc)
        for rec in self.annotations.values():
            if rec["type"] == GENERATIVE:
                words.update(rec["truth"])
                words.update(rec.get("hallu", []))
        return frozenset(words)


def _read_json(path: Path) -> Any:
    return read_json(path, AmberFormatError)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def load_annotations(path: Path) -> dict[int, dict[str, Any]]:
    """Reads and validates ``annotations.json``.

    Args:
        path: The annotation file.

    Returns:
        Records keyed by their integer ``id``.

    Raises:
        AmberFormatError: On a missing file, bad JSON, a record without a valid
            ``id``/``type``/``truth``, a duplicate id or an unknown type.
    """
    data = _read_json(path)
    if not isinstance(data, list):
        raise AmberFormatError(f"{path}: expected a JSON list of records")
    out: dict[int, dict[str, Any]] = {}
    for pos, rec in enumerate(data):
        where = f"{path}: record #{pos}"
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), int):
            raise AmberFormatError(f"{where}: missing integer 'id'")
        kind = rec.get("type")
        if kind == GENERATIVE:
            if not _is_str_list(rec.get("truth")) or not _is_str_list(rec.get("hallu", [])):
                raise AmberFormatError(f"{where} (id {rec['id']}): generative 'truth'/'hallu' must be word lists")
        elif kind in DISCRIMINATIVE_TYPES:
            if rec.get("truth") not in ("yes", "no"):
                raise AmberFormatError(f"{where} (id {rec['id']}): 'truth' must be 'yes' or 'no'")
        else:
            raise AmberFormatError(f"{where} (id {rec['id']}): unknown type {kind!r}")
        if rec["id"] in out:
            raise AmberFormatError(f"{where}: duplicate id {rec['id']}")
        out[rec["id"]] = rec
    return out


def load_relation(path: Path) -> dict[str, list[str]]:
    """Reads ``relation.json`` (word -> list of associated words)."""
    data = _read_json(path)
    if not isinstance(data, dict) or not all(_is_str_list(v) for v in data.values()):
        raise AmberFormatError(f"{path}: expected an object mapping words to lists of words")
    return data


def load_safe_words(path: Path) -> tuple[str, ...]:
    """Reads ``safe_words.txt`` exactly as the official scorer (one word per line, split at ``\\n``)."""
    if not path.is_file():
        raise AmberFormatError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AmberFormatError(f"{path}: unreadable ({exc})") from None
    return tuple(line.split("\n")[0] for line in text.splitlines(keepends=True))


def load_queries(root: Path | str, task: str) -> list[dict[str, Any]]:
    """Reads the query file of ``task``.

    Args:
        root: The AMBER root.
        task: One of ``a``, ``g``, ``d``, ``de``, ``da``, ``dr`` (see :data:`TASK_FILES`).

    Returns:
        The ``{id, image, query}`` records in file order.

    Raises:
        AmberFormatError: On an unknown task or a missing/malformed query file.
    """
    if task not in TASK_FILES:
        raise AmberFormatError(f"unknown task {task!r}; expected one of {', '.join(TASK_FILES)}")
    path = Path(root) / "query" / f"{TASK_FILES[task]}.json"
    data = _read_json(path)
    if not isinstance(data, list):
        raise AmberFormatError(f"{path}: expected a JSON list of queries")
    seen: set[int] = set()
    for pos, rec in enumerate(data):
        if not (isinstance(rec, dict) and isinstance(rec.get("id"), int)
                and isinstance(rec.get("image"), str) and isinstance(rec.get("query"), str)):
            raise AmberFormatError(f"{path}: query #{pos} needs integer 'id' and string 'image', 'query'")
        if rec["id"] in seen:
            raise AmberFormatError(f"{path}: duplicate id {rec['id']}")
        seen.add(rec["id"])
    return data


def load_amber(root: Path | str) -> AmberData:
    """Loads and cross-checks an AMBER root.

    Besides each file's own format, every truth/hallu word of a generative record
    must be a key of ``relation.json`` (the official scorer indexes it directly).

    Raises:
        AmberFormatError: If the folder or one of its files is missing or malformed.
    """
    root = Path(root)
    if not root.is_dir():
        raise AmberFormatError(f"{root}: AMBER root folder not found")
    annotations = load_annotations(root / "annotations.json")
    relation = load_relation(root / "relation.json")
    safe_words = load_safe_words(root / "safe_words.txt")
    for rec in annotations.values():
        if rec["type"] == GENERATIVE:
            for word in (*rec["truth"], *rec.get("hallu", [])):
                if word not in relation:
                    raise AmberFormatError(
                        f"{root / 'relation.json'}: word {word!r} of annotation id {rec['id']} has no entry")
    return AmberData(root=root, annotations=annotations, relation=relation, safe_words=safe_words)


def check_queries(queries: list[dict[str, Any]], data: AmberData) -> None:
    """Raises :class:`AmberFormatError` if a query id has no annotation."""
    for rec in queries:
        if rec["id"] not in data.annotations:
            raise AmberFormatError(f"query id {rec['id']} has no record in {data.root / 'annotations.json'}")
