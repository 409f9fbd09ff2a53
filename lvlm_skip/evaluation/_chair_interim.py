"""CHAIR (Rohrbach et al., EMNLP 2018) with the project's interim word list. TEMPORARY.

This module is replaced by :mod:`lvlm_skip.evaluation.chair`, which reproduces the original
``utils/chair.py`` with its ``synonyms.txt`` (LisaAnne/Hallucination). Until that lands, the caption
task imports this one under the name ``chair`` in exactly one place
(:mod:`lvlm_skip.evaluation.caption`), so the switch is one line. Same API:

* :func:`caption_objects` ``(caption) -> [(word, COCO category), ...]``;
* :func:`chair_scores` ``(candidates, image_objects) -> {CHAIR_S, CHAIR_I, n_captions,
  n_hallucinated_captions, n_mentions, n_hallucinated_mentions, n_missing_objects, per_caption}``;
* :func:`image_objects_from_instances` ``(data_or_path) -> {image id: {category, ...}}``;
* :func:`image_objects_from_captions` ``(references) -> {image id: {category, ...}}``.

Known differences from the original (issue 12): the synonym table below is the project's own,
hand-written in the spirit of ``synonyms.txt`` but not a copy of it (it misses words the original
counts and counts words the original does not), and the train-tracks rule is missing.

* :data:`COCO_CATEGORIES`: the 80 category names exactly as spelled in COCO's ``instances_*.json``.
* :data:`COCO_SYNONYMS`: ``{singular word or two-word phrase: category name}``; keys are lower-case
  and singular, because captions are singularized (:func:`singularize`) before lookup.
* :data:`COCO_PHRASE_RULES`: two-word phrases rewritten before lookup (``"baby dog" -> "dog"`` so
  that "baby" does not fire *person*; ``"toilet seat" -> "toilet"``); a value that is not a key of
  the synonym table (``"home plate"``) swallows the phrase.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any, Hashable

from .json_files import DataFileError, read_json

logger = logging.getLogger(__name__)

COCO_CATEGORIES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard", "tennis racket", "bottle", "wine glass", "cup", "fork", "knife",
    "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)

# category -> extra singular words / two-word phrases naming it (the category's own
# singular spelling is added automatically below).
_EXTRA: dict[str, tuple[str, ...]] = {
    "person": (
        "people", "man", "woman", "boy", "girl", "child", "kid", "baby", "toddler",
        "infant", "lady", "gentleman", "guy", "adult", "teenager", "teen", "player",
        "skier", "surfer", "skateboarder", "snowboarder", "rider", "biker", "cyclist",
        "pedestrian", "chef", "cook", "worker", "officer", "policeman", "cop",
        "soldier", "mother", "father", "son", "daughter", "passenger", "spectator",
        "tourist", "student", "batter", "catcher", "pitcher", "umpire", "bride",
        "groom", "cowboy", "human", "male", "female",
    ),
    "bicycle": ("bike", "cycle"),
    "car": ("automobile", "van", "minivan", "sedan", "suv", "jeep", "taxi", "cab",
            "limo", "limousine", "coupe"),
    "motorcycle": ("motorbike", "motor bike", "motor cycle", "scooter", "moped",
                   "dirt bike"),
    "airplane": ("aeroplane", "plane", "jet", "aircraft", "airliner", "jetliner",
                 "air plane"),
    "bus": ("minibus", "school bus", "trolley"),
    "train": ("locomotive", "tram", "subway"),
    "truck": ("pickup", "lorry", "firetruck", "fire truck"),
    "boat": ("ship", "sailboat", "sail boat", "yacht", "kayak", "canoe", "ferry",
             "raft", "rowboat", "vessel"),
    "traffic light": ("traffic signal", "stop light", "stoplight", "street light"),
    "fire hydrant": ("hydrant",),
    "parking meter": ("meter",),
    "bird": ("pigeon", "duck", "goose", "seagull", "gull", "parrot", "eagle", "owl",
             "swan", "sparrow", "pelican", "crow", "flamingo", "penguin"),
    "cat": ("kitten", "kitty"),
    "dog": ("puppy", "pup", "doggy", "hound"),
    "horse": ("pony", "foal", "stallion", "mare"),
    "sheep": ("lamb", "ram"),
    "cow": ("cattle", "bull", "calf", "ox"),
    "bear": ("polar bear", "grizzly"),
    "backpack": ("knapsack", "rucksack"),
    "umbrella": ("parasol",),
    "handbag": ("purse", "hand bag"),
    "tie": ("necktie",),
    "suitcase": ("suit case", "luggage"),
    "skis": ("ski",),
    "sports ball": ("ball", "football", "basketball", "volleyball", "softball",
                    "soccer ball", "tennis ball"),
    "baseball bat": ("bat",),
    "baseball glove": ("glove", "mitt"),
    "skateboard": ("skate board",),
    "surfboard": ("surf board",),
    "tennis racket": ("racket", "racquet"),
    "wine glass": ("goblet",),
    "cup": ("mug", "teacup", "coffee cup"),
    "sandwich": ("burger", "hamburger"),
    "hot dog": ("hotdog",),
    "donut": ("doughnut",),
    "cake": ("cupcake", "cheesecake"),
    "chair": ("seat", "stool", "armchair"),
    "couch": ("sofa", "loveseat"),
    "potted plant": ("houseplant", "house plant", "flowerpot", "flower pot"),
    "dining table": ("table", "desk", "kitchen table"),
    "toilet": ("urinal", "commode"),
    "tv": ("television",),
    "laptop": ("laptop computer", "computer"),
    "remote": ("remote control", "controller"),
    "cell phone": ("phone", "cellphone", "smartphone", "iphone", "mobile phone"),
    "oven": ("stove",),
    "refrigerator": ("fridge", "freezer"),
    "book": ("novel",),
    "scissors": ("scissor",),
    "teddy bear": ("teddy",),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer"),
    "toothbrush": ("tooth brush",),
}

COCO_SYNONYMS: dict[str, str] = {cat: cat for cat in COCO_CATEGORIES}
for _cat, _words in _EXTRA.items():
    for _w in _words:
        COCO_SYNONYMS[_w] = _cat

_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear",
            "zebra", "giraffe", "animal", "cub")

COCO_PHRASE_RULES: dict[str, str] = {
    **{f"baby {a}": a for a in _ANIMALS},
    **{f"adult {a}": a for a in _ANIMALS},
    "passenger jet": "jet",
    "passenger train": "train",
    "bow tie": "tie",
    "toilet seat": "toilet",
    "home plate": "home plate",
}


_IRREGULAR_PLURALS = {
    "men": "man", "women": "woman", "people": "people", "children": "child",
    "mice": "mouse", "geese": "goose", "oxen": "ox", "feet": "foot", "teeth": "tooth",
    "knives": "knife", "wives": "wife", "leaves": "leaf", "shelves": "shelf",
    "calves": "calf", "halves": "half", "loaves": "loaf", "wolves": "wolf",
    "skis": "ski", "buses": "bus", "shoes": "shoe", "cattle": "cattle",
    "sheep": "sheep", "fish": "fish", "scissors": "scissor", "glasses": "glass",
    "series": "series", "species": "species", "tomatoes": "tomato", "potatoes": "potato",
}


def singularize(word: str) -> str:
    """Rule-based English singularization sufficient for COCO object words (interim).

    The original CHAIR singularizes with ``pattern.en.singularize``; this is not a reproduction
    of it, and goes away with this module. Irregular plurals come from a small table (``men -> man``, ``knives -> knife``,
    ``mice -> mouse``, ...); otherwise ``-ies -> -y`` (puppies), ``-sses/-shes/-ches/
    -xes/-zes`` drop ``es`` (glasses, benches, boxes), words ending in ``ss``, ``us``,
    ``is`` or of length <= 3 are kept (bus, grass, tennis), and a final ``s`` is dropped
    (dogs, giraffes).
    """
    w = word.lower()
    if w in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[w]
    if len(w) <= 3 or not w.endswith("s") or w.endswith(("ss", "us", "is")):
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("sses", "shes", "ches", "xes", "zes")):
        return w[:-2]
    return w[:-1]


def caption_objects(
    caption: str,
    synonyms: Mapping[str, str] = COCO_SYNONYMS,
    phrase_rules: Mapping[str, str] = COCO_PHRASE_RULES,
) -> list[tuple[str, str]]:
    """Finds the object mentions of a caption, as in Rohrbach et al.'s ``caption_to_words``.

    Steps: lower-case and split into alphabetic words; singularize every word; scan left
    to right, rewriting a two-word phrase through ``phrase_rules`` when it matches, else
    keeping a two-word phrase that is a key of ``synonyms`` as one token; if both
    "toilet" and "seat" occur, "seat" is dropped; finally every token that is a key of
    ``synonyms`` is one mention (repeated mentions count repeatedly).

    Returns:
        ``[(mention, category), ...]`` in caption order.
    """
    words = [singularize(w) for w in re.findall(r"[a-z]+", (caption or "").lower())]
    tokens: list[str] = []
    i = 0
    while i < len(words):
        pair = " ".join(words[i:i + 2])
        if i + 1 < len(words) and pair in phrase_rules:
            tokens.append(phrase_rules[pair])
            i += 2
        elif i + 1 < len(words) and pair in synonyms:
            tokens.append(pair)
            i += 2
        else:
            tokens.append(words[i])
            i += 1
    if "toilet" in tokens and "seat" in tokens:
        tokens = [t for t in tokens if t != "seat"]
    return [(t, synonyms[t]) for t in tokens if t in synonyms]


def chair_scores(
    candidates: Mapping[Hashable, str],
    image_objects: Mapping[Hashable, set[str]],
    synonyms: Mapping[str, str] | None = None,
    phrase_rules: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """CHAIR object-hallucination metrics (Rohrbach et al., EMNLP 2018).

    A mention (see :func:`caption_objects`) is *hallucinated* when its category is not
    in the image's ground-truth object set.  With C the scored captions::

        CHAIR_I = #hallucinated mentions / #object mentions       (over all of C)
        CHAIR_S = #captions with >= 1 hallucinated mention / |C|

    CHAIR_I is 0.0 when there is no mention at all.  Ground-truth sets are usually the
    COCO instance categories (:func:`image_objects_from_instances`),
    optionally united with the objects mentioned in the reference captions
    (:func:`image_objects_from_captions`), as in the original paper.

    Args:
        candidates: ``{image id: generated caption}``.
        image_objects: ``{image id: set of category names}``; captions whose id is
            missing here are not scored (counted in ``n_missing_objects``).
        synonyms: ``{singular word or two-word phrase: category}``; default
            :data:`COCO_SYNONYMS`.
        phrase_rules: two-word rewrites; default :data:`COCO_PHRASE_RULES`.

    Returns:
        ``{"CHAIR_S", "CHAIR_I", "n_captions", "n_hallucinated_captions",
        "n_mentions", "n_hallucinated_mentions", "n_missing_objects",
        "per_caption": {id: {"mentions": [...], "hallucinated": [...]}}}``.
    """
    synonyms = COCO_SYNONYMS if synonyms is None else synonyms
    phrase_rules = COCO_PHRASE_RULES if phrase_rules is None else phrase_rules
    per_caption: dict[Hashable, dict[str, list[list[str]]]] = {}
    n_caps = n_hall_caps = n_mentions = n_hall = n_missing = 0
    for image_id, caption in candidates.items():
        if image_id not in image_objects:
            n_missing += 1
            continue
        gt = image_objects[image_id]
        mentions = caption_objects(caption, synonyms, phrase_rules)
        hallucinated = [[w, c] for w, c in mentions if c not in gt]
        per_caption[image_id] = {"mentions": [[w, c] for w, c in mentions],
                                 "hallucinated": hallucinated}
        n_caps += 1
        n_mentions += len(mentions)
        n_hall += len(hallucinated)
        n_hall_caps += bool(hallucinated)
    if n_missing:
        logger.warning("CHAIR: %d caption(s) have no ground-truth object set", n_missing)
    return {
        "CHAIR_S": n_hall_caps / n_caps if n_caps else 0.0,
        "CHAIR_I": n_hall / n_mentions if n_mentions else 0.0,
        "n_captions": n_caps,
        "n_hallucinated_captions": n_hall_caps,
        "n_mentions": n_mentions,
        "n_hallucinated_mentions": n_hall,
        "n_missing_objects": n_missing,
        "per_caption": per_caption,
    }


def image_objects_from_instances(
    instances_json: str | os.PathLike | Mapping[str, Any],
    synonyms: Mapping[str, str] | None = None,
) -> dict[int, set[str]]:
    """Ground-truth object categories per image from a COCO ``instances_*.json``.

    Args:
        instances_json: path to the file, or its already-parsed content (a dict with
            ``"categories"`` ``[{"id", "name"}]`` and ``"annotations"``
            ``[{"image_id", "category_id"}]``; ``"images"`` adds images without objects).
        synonyms: when given, category names are mapped through it (names that are not
            keys are kept unchanged), for tables whose categories differ from COCO's names.

    Returns:
        ``{image_id: {category name, ...}}`` (every listed image, possibly empty sets).

    Raises:
        DataFileError: unreadable or malformed file.
    """
    data = instances_json if isinstance(instances_json, Mapping) else read_json(instances_json)
    try:
        names = {c["id"]: c["name"] for c in data["categories"]}
        out: dict[int, set[str]] = {img["id"]: set() for img in data.get("images", [])}
        for ann in data["annotations"]:
            name = names[ann["category_id"]]
            if synonyms is not None:
                name = synonyms.get(name, name)
            out.setdefault(ann["image_id"], set()).add(name)
    except (KeyError, TypeError) as exc:
        raise DataFileError(f"malformed COCO instances data: missing key {exc}") from None
    return out


def image_objects_from_captions(
    references: Mapping[Hashable, list[str]],
    synonyms: Mapping[str, str] | None = None,
    phrase_rules: Mapping[str, str] | None = None,
) -> dict[Hashable, set[str]]:
    """Object categories mentioned in the reference captions of each image.

    Rohrbach et al. unite these with the instance annotations to build the ground truth.
    """
    synonyms = COCO_SYNONYMS if synonyms is None else synonyms
    phrase_rules = COCO_PHRASE_RULES if phrase_rules is None else phrase_rules
    return {i: {c for cap in caps for _, c in caption_objects(cap, synonyms, phrase_rules)}
            for i, caps in references.items()}
