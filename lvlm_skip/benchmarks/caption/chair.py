"""CHAIR object-hallucination metrics, reproducing the original implementation exactly.

Definitions (Rohrbach, Hendricks et al., "Object Hallucination in Image Captioning", EMNLP 2018).
A *mention* is an occurrence, in a caption, of a word of the CHAIR synonyms table; its
*category* is the first word of the table line holding it (one of the 80 MSCOCO categories). A
mention is *hallucinated* when its category is not among the image's ground-truth categories.
Over the scored captions C::

    CHAIR_I = #hallucinated mentions / #mentions            (repeated mentions count repeatedly)
    CHAIR_S = #captions with >= 1 hallucinated mention / |C|

The ground truth of the original is the union of the image's COCO instance categories
(:func:`image_objects_from_instances`) and the categories mentioned in its reference captions
(:func:`image_objects_from_captions`).

Source. ``utils/chair.py`` (``CHAIR.__init__``, ``caption_to_words``, ``compute_chair``,
``get_annotations_from_segments``, ``get_annotations_from_captions``) and ``data/synonyms.txt`` of
https://github.com/LisaAnne/Hallucination at commit 6e4d33c4bedf6dfcd24c61bf527f40714717be47
(BSD 2-Clause, as its README declares). The synonyms table ships unchanged, byte for byte
(:mod:`lvlm_skip.data.coco_objects`, with its provenance and licence). The rules that are code in the original are re-expressed here:

1. lower-case the caption, tokenize it (``nltk.word_tokenize``) and singularize every token
   (``pattern.en.singularize``);
2. scan the tokens left to right; where a token and the next form a key of the two-word table
   (:data:`COCO_DOUBLE_WORDS` kept as one token; ``baby``/``adult`` + :data:`ANIMAL_WORDS` and
   ``passenger`` + :data:`VEHICLE_WORDS` reduced to the animal or vehicle; ``bow tie`` -> ``tie``,
   ``toilet seat`` -> ``toilet``, ``wine glas`` -> ``wine glass``), replace the pair and skip both;
   a merged pair that is not in the table, such as ``train track``, is no mention at all, so
   "train tracks" never counts as a train;
3. if ``toilet`` and ``seat`` both remain, drop every ``seat`` ("the seat of the toilet" is no chair);
4. every remaining token that is a word of the table is a mention of that word's category.

Quirks of the original, all reproduced by the default ``synonyms="original"``:

* singular ``bus`` (also ``minibus``, ``airbus``) is never counted: pattern singularizes it to
  ``bu``; only plurals (``buses`` -> ``bus``) count;
* two entries start with a space (``" motor bike"``, ``" cheesecake"``; the line is split on
  ``", "`` and ``"scooter,  motor bike"`` has two spaces), so neither phrase ever matches, and
  "motor bike" is not even counted as a bike because the pair is merged first;
* ``iPhone`` is capitalised, and captions are lower-cased, so it never matches;
* other effects of pattern: ``ties`` -> ``ty``, ``canoes`` -> ``cano``, ``thieves`` -> ``thieve``,
  ``magpies`` -> ``magpy`` are not counted, nor ``collies``/``doggies`` (kept plural);
  ``stove top oven`` (three words) never matches as one phrase; ``dining table`` is not in the
  two-word table, so it counts through ``table``;
* a word listed under two categories takes the later line (no word of the shipped table is).

``synonyms="corrected"`` strips and lower-cases every entry and singularizes the words above
(:data:`CORRECTED_SINGULARS`) to the table's form; it is NOT the published metric.

Tokenizer and singularizer: nltk and pattern when installed, else offline stand-ins, or callables
given as ``tokenize=`` / ``singularize=``; see :mod:`lvlm_skip.benchmarks.caption.chair_text` for how the
stand-ins are derived and where they can differ from nltk 3.2.5 / pattern 3.6.

Differences from the original in edge cases only: a caption whose id has no ground truth is
skipped and counted (the original raises ``KeyError``); CHAIR_S / CHAIR_I are 0.0 when there is no
caption / no mention (the original divides by zero).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from ...config import SynonymTable
from ...data.coco_objects import SOURCE_COMMIT, SOURCE_REPOSITORY, synonym_lines
from ...errors import InputError
from .chair_text import Singularize, Tokenize, resolve_text_tools

logger = logging.getLogger(__name__)


# Constants of CHAIR.__init__ in utils/chair.py (LisaAnne/Hallucination, BSD-2).
COCO_DOUBLE_WORDS: tuple[str, ...] = (
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
    "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball",
    "baseball bat", "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone",
    "mobile phone", "teddy bear", "hair drier", "potted plant", "bow tie", "laptop computer",
    "stove top oven", "home plate", "train track",
)
"""Two-word phrases kept as one token (``stove top oven`` has three words and never matches)."""
ANIMAL_WORDS: tuple[str, ...] = (
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "animal", "cub",
)
"""``baby X`` and ``adult X`` count as X, not as a person."""
VEHICLE_WORDS: tuple[str, ...] = ("jet", "train")
"""``passenger X`` counts as X, not as a person."""
SPECIAL_DOUBLE_WORDS: Mapping[str, str] = {
    "bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass",
}
"""Pair rewrites applied last (``wine glas``: pattern singularizes ``glass`` to ``glas``)."""
CORRECTED_SINGULARS: Mapping[str, str] = {
    "bus": "bus", "minibus": "minibus", "airbus": "airbus", "ties": "tie", "canoes": "canoe",
    "thieves": "thief", "magpies": "magpie", "collies": "collie", "doggies": "doggie",
}
"""``synonyms="corrected"`` only: tokens mapped here instead of being singularized."""

SYNONYM_TABLES: tuple[str, ...] = get_args(SynonymTable)


@dataclass(frozen=True)
class ChairVocabulary:
    """What CHAIR counts: the synonyms table and the two-word table.

    Attributes:
        name: ``"original"`` or ``"corrected"``.
        category: ``{table word or phrase: its category}``, every word of the table.
        double_words: ``{"first second": the token the pair becomes}``.
        singulars: tokens mapped directly instead of being singularized (empty for the original).
    """

    name: str
    category: Mapping[str, str]
    double_words: Mapping[str, str]
    singulars: Mapping[str, str]


def _double_word_table() -> dict[str, str]:
    table = {phrase: phrase for phrase in COCO_DOUBLE_WORDS}
    for animal in ANIMAL_WORDS:
        table[f"baby {animal}"] = table[f"adult {animal}"] = animal
    for vehicle in VEHICLE_WORDS:
        table[f"passenger {vehicle}"] = vehicle
    table.update(SPECIAL_DOUBLE_WORDS)
    return table


@functools.lru_cache(maxsize=None)
def load_vocabulary(synonyms: SynonymTable = "original") -> ChairVocabulary:
    """The CHAIR vocabulary: ``"original"`` (the published metric) or ``"corrected"``."""
    if synonyms not in SYNONYM_TABLES:
        raise InputError(f"synonyms must be one of {', '.join(SYNONYM_TABLES)}, not {synonyms!r}")
    lines = [list(line) for line in synonym_lines()]
    if synonyms == "corrected":
        lines = [[entry.strip().lower() for entry in line] for line in lines]
    category = {entry: line[0] for line in lines for entry in line}
    singulars = CORRECTED_SINGULARS if synonyms == "corrected" else {}
    return ChairVocabulary(synonyms, category, _double_word_table(), dict(singulars))


def _vocabulary(synonyms: SynonymTable | ChairVocabulary) -> ChairVocabulary:
    return synonyms if isinstance(synonyms, ChairVocabulary) else load_vocabulary(synonyms)


def _merge_double_words(words: list[str], double_words: Mapping[str, str]) -> list[str]:
    """Greedy left-to-right pass replacing each pair that is a key of ``double_words``."""
    merged, i = [], 0
    while i < len(words):
        pair = " ".join(words[i:i + 2])
        if pair in double_words:
            merged.append(double_words[pair])
            i += 2
        else:
            merged.append(words[i])
            i += 1
    return merged


def caption_objects(
    caption: str,
    *,
    synonyms: SynonymTable | ChairVocabulary = "original",
    tokenize: Tokenize | None = None,
    singularize: Singularize | None = None,
) -> list[tuple[str, str]]:
    """The object mentions of a caption, as the original ``caption_to_words`` finds them.

    Args:
        caption: the text.
        synonyms: ``"original"``, ``"corrected"`` or a :class:`ChairVocabulary`.
        tokenize: splits the lower-cased caption; default nltk's ``word_tokenize`` or its stand-in.
        singularize: maps a token to its singular; default pattern's or its stand-in.

    Returns:
        ``[(word as matched, category), ...]`` in caption order, a repeated mention repeated;
        the word is the token after singularization and pair merging (``"people"`` gives
        ``("person", "person")``, ``"baby birds"`` gives ``("bird", "bird")``).
    """
    if not isinstance(caption, str):
        raise InputError(f"a caption must be a string, not {type(caption).__name__}")
    vocabulary = _vocabulary(synonyms)
    tokenize, singularize = resolve_text_tools(tokenize, singularize)
    # 1. tokenize the lower-cased caption and singularize every token
    words = [vocabulary.singulars.get(t) or singularize(t) for t in tokenize(caption.lower())]
    # 2. merge two-word phrases
    words = _merge_double_words(words, vocabulary.double_words)
    # 3. a seat next to a toilet is the toilet's
    if "toilet" in words and "seat" in words:
        words = [w for w in words if w != "seat"]
    # 4. keep the words of the table
    return [(w, vocabulary.category[w]) for w in words if w in vocabulary.category]


def chair_scores(
    candidates: Mapping[Hashable, str],
    image_objects: Mapping[Hashable, set[str]],
    *,
    synonyms: SynonymTable | ChairVocabulary = "original",
    tokenize: Tokenize | None = None,
    singularize: Singularize | None = None,
) -> dict[str, Any]:
    """CHAIR_S and CHAIR_I of generated captions, counted as the original ``compute_chair``.

    Args:
        candidates: ``{image id: generated caption}``.
        image_objects: ``{image id: ground-truth categories}``; a caption whose id is missing is
            not scored and is counted in ``n_missing_objects``.
        synonyms, tokenize, singularize: as in :func:`caption_objects`.

    Returns:
        ``CHAIR_S`` and ``CHAIR_I`` (fractions in [0, 1], 0.0 with no caption / no mention),
        ``n_captions``, ``n_hallucinated_captions``, ``n_mentions``, ``n_hallucinated_mentions``,
        ``n_missing_objects``, and ``per_caption``:
        ``{id: {"mentions": [[word, category], ...], "hallucinated": [[word, category], ...]}}``.
    """
    vocabulary = _vocabulary(synonyms)
    tokenize, singularize = resolve_text_tools(tokenize, singularize)
    per_caption: dict[Hashable, dict[str, list[list[str]]]] = {}
    n_missing = n_hallucinated_captions = n_mentions = n_hallucinated = 0
    for image_id, caption in candidates.items():
        if image_id not in image_objects:
            n_missing += 1
            continue
        truth = image_objects[image_id]
        mentions = caption_objects(caption, synonyms=vocabulary, tokenize=tokenize, singularize=singularize)
        hallucinated = [[word, cat] for word, cat in mentions if cat not in truth]
        per_caption[image_id] = {"mentions": [[word, cat] for word, cat in mentions],
                                 "hallucinated": hallucinated}
        n_mentions += len(mentions)
        n_hallucinated += len(hallucinated)
        n_hallucinated_captions += bool(hallucinated)
    if n_missing:
        logger.warning("CHAIR: %d caption(s) have no ground-truth objects and are not scored", n_missing)
    n_captions = len(per_caption)
    return {
        "CHAIR_S": n_hallucinated_captions / n_captions if n_captions else 0.0,
        "CHAIR_I": n_hallucinated / n_mentions if n_mentions else 0.0,
        "n_captions": n_captions,
        "n_hallucinated_captions": n_hallucinated_captions,
        "n_mentions": n_mentions,
        "n_hallucinated_mentions": n_hallucinated,
        "n_missing_objects": n_missing,
        "per_caption": per_caption,
    }


def _read_instances(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise InputError(f"cannot read COCO instances file {os.fspath(path)}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"COCO instances file {os.fspath(path)} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(f"COCO instances file {os.fspath(path)} is JSON nested too deeply") from None


def _records(data: Mapping[str, Any], key: str, fields: tuple[str, ...]) -> list[Mapping[str, Any]]:
    """``data[key]``, checked to be a list of dicts that have ``fields``."""
    records = data.get(key)
    if not isinstance(records, list):
        raise InputError(f"malformed COCO instances data: {key!r} must be a list")
    for i, record in enumerate(records):
        if not isinstance(record, Mapping) or any(f not in record for f in fields):
            raise InputError(f"malformed COCO instances data: {key}[{i}] needs the keys {', '.join(fields)}")
    return records


def image_objects_from_instances(
    instances: str | os.PathLike | Mapping[str, Any],
    *,
    synonyms: SynonymTable | ChairVocabulary = "original",
) -> dict[int, set[str]]:
    """Ground-truth categories per image from a COCO ``instances_*.json``, as the original reads them.

    Each annotation adds its category name, mapped through the synonyms table (the original's
    ``inverse_synonym_dict``; the identity on the 80 COCO names), to its image.

    Args:
        instances: path to the file, or its parsed content with ``"categories"`` (``id``, ``name``),
            ``"annotations"`` (``image_id``, ``category_id``) and optionally ``"images"`` (``id``).
        synonyms: as in :func:`caption_objects`.

    Returns:
        ``{image id: {category, ...}}``: every listed image (an empty set when it has no
        annotation), and any image that only annotations name.

    Raises:
        lvlm_skip.errors.InputError: unreadable file or malformed content.

    A category that the synonyms table does not name (a dataset that is not COCO, such as the scene
    benchmark's moons and candles) cannot be mentioned in CHAIR's sense either: it is left out of the
    ground truth, with a warning naming it, and captions are scored on the table's objects only.
    """
    data = instances if isinstance(instances, Mapping) else _read_instances(instances)
    if not isinstance(data, Mapping):
        raise InputError("malformed COCO instances data: the top level must be a JSON object")
    vocabulary = _vocabulary(synonyms)
    names = {c["id"]: c["name"] for c in _records(data, "categories", ("id", "name"))}
    unknown = sorted(str(n) for n in names.values() if n not in vocabulary.category)
    if unknown:
        logger.warning("CHAIR: categories outside its synonyms table are not scored: %s", ", ".join(unknown))
    images = _records(data, "images", ("id",)) if "images" in data else []
    objects: dict[int, set[str]] = {image["id"]: set() for image in images}
    for i, annotation in enumerate(_records(data, "annotations", ("image_id", "category_id"))):
        if annotation["category_id"] not in names:
            raise InputError(f"malformed COCO instances data: annotations[{i}] has an unknown category_id "
                             f"{annotation['category_id']!r}")
        image = objects.setdefault(annotation["image_id"], set())
        category = vocabulary.category.get(names[annotation["category_id"]])
        if category is not None:
            image.add(category)
    return objects


def image_objects_from_captions(
    references: Mapping[Hashable, list[str]],
    *,
    synonyms: SynonymTable | ChairVocabulary = "original",
    tokenize: Tokenize | None = None,
    singularize: Singularize | None = None,
) -> dict[Hashable, set[str]]:
    """The categories mentioned in each image's reference captions (the original's caption ground truth).

    Args:
        references: ``{image id: [reference caption, ...]}``.
        synonyms, tokenize, singularize: as in :func:`caption_objects`.

    Returns:
        ``{image id: {category, ...}}``, mentions found exactly as in generated captions.
    """
    vocabulary = _vocabulary(synonyms)
    tokenize, singularize = resolve_text_tools(tokenize, singularize)
    for image_id, captions in references.items():
        if isinstance(captions, str):
            raise InputError(f"references[{image_id!r}] must be a list of captions, not one string")
    return {
        image_id: {category for caption in captions
                   for _, category in caption_objects(caption, synonyms=vocabulary, tokenize=tokenize,
                                                      singularize=singularize)}
        for image_id, captions in references.items()
    }
