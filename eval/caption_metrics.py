"""Caption-quality, object-hallucination and output-closeness metrics.

Three families of plain functions:

* :func:`coco_caption_scores`: the standard COCO caption metrics (BLEU-1..4, METEOR,
  ROUGE-L, CIDEr, optionally SPICE) computed with ``pycocoevalcap`` after its
  ``PTBTokenizer``.  Metrics whose requirements are missing (``java`` for METEOR and
  the tokenizer, the Stanford CoreNLP jars for SPICE) are skipped with a logged message
  and listed in the result instead of failing or downloading anything.
* :func:`chair_scores`: CHAIR_S / CHAIR_I of Rohrbach et al. (2018).
* :func:`closeness_to_reference_variant`: how close a layer-skipping variant's outputs
  are to the unmodified model's (``none``) outputs for the same images.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Hashable

from eval.coco_synonyms import COCO_PHRASE_RULES, COCO_SYNONYMS

logger = logging.getLogger(__name__)

ALL_CAPTION_METRICS: tuple[str, ...] = (
    "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE",
)
_SCORER_GROUPS: tuple[str, ...] = ("bleu", "meteor", "rouge", "cider", "spice")
# Same punctuation list as pycocoevalcap's PTBTokenizer (used by the java-free fallback).
_PTB_PUNCT = {"''", "'", "``", "`", "-lrb-", "-rrb-", "-lcb-", "-rcb-", ".", "?", "!",
              ",", ":", "-", "--", "...", ";"}
_SPICE_CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


# --------------------------------------------------------------------------- COCO metrics
def java_available() -> bool:
    """Returns True when a ``java`` executable is on ``PATH``."""
    return shutil.which("java") is not None


def spice_status() -> tuple[bool, str]:
    """Tells whether SPICE can run without downloading anything.

    pycocoevalcap's ``Spice()`` constructor downloads Stanford CoreNLP 3.6.0 (~400 MB)
    into ``pycocoevalcap/spice/lib`` when the jars are absent; this function only looks
    for those files and never triggers the download.

    Returns:
        ``(available, reason)``; ``reason`` is empty when available.
    """
    if not java_available():
        return False, "java not found on PATH"
    try:
        import pycocoevalcap.spice as spice_pkg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        return False, f"pycocoevalcap.spice not importable ({exc})"
    spice_dir = Path(spice_pkg.__file__).parent
    missing = [j for j in _SPICE_CORENLP_JARS if not (spice_dir / "lib" / j).is_file()]
    if not (spice_dir / "spice-1.0.jar").is_file():
        missing.insert(0, "spice-1.0.jar")
    if missing:
        return False, (f"Stanford CoreNLP jars missing in {spice_dir / 'lib'} "
                       f"({', '.join(missing)}); SPICE would download them")
    return True, ""


def _simple_tokenize(text: str) -> str:
    """Java-free approximation of PTBTokenizer: lower-case, split, drop punctuation."""
    tokens = re.findall(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]", text.lower())
    return " ".join(t for t in tokens if t not in _PTB_PUNCT)


def _tokenize(captions: Mapping[Hashable, list[str]], use_java: bool) -> dict[Hashable, list[str]]:
    if use_java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        wrapped = {k: [{"caption": c} for c in v] for k, v in captions.items()}
        return PTBTokenizer().tokenize(wrapped)
    return {k: [_simple_tokenize(c) for c in v] for k, v in captions.items()}


def coco_caption_scores(
    references: Mapping[Hashable, list[str]],
    candidates: Mapping[Hashable, str],
    metrics: Iterable[str] = _SCORER_GROUPS,
) -> dict[str, Any]:
    """Corpus-level COCO caption metrics through pycocoevalcap.

    Definitions are pycocoevalcap's: BLEU-n is the corpus BLEU (closest reference
    length brevity penalty) with n-gram orders 1..n; METEOR 1.5 (``-l en -norm``);
    ROUGE-L is the mean over images of the LCS F-measure (beta=1.2) against the best
    reference; CIDEr is CIDEr-D style TF-IDF n-gram cosine (n=1..4, sigma=6, x10) whose
    IDF is computed on the evaluated reference set; SPICE is the scene-graph F-score.
    All captions are first tokenized with Stanford's PTBTokenizer (java) or, when java
    is missing, a lower-casing regex tokenizer that drops the same punctuation.

    Only ids present in both ``references`` and ``candidates`` are scored.

    Args:
        references: ``{id: [reference caption, ...]}`` (at least one per id).
        candidates: ``{id: generated caption}``.
        metrics: scorer groups to run, a subset of ``("bleu", "meteor", "rouge",
            "cider", "spice")``.

    Returns:
        ``{"scores": {metric: float}, "skipped": {metric: reason}, "n_scored": int,
        "n_missing_reference": int, "tokenizer": "ptb" | "simple"}``.
    """
    return coco_caption_scores_multi(references, {"_": candidates}, metrics)["_"]


def coco_caption_scores_multi(
    references: Mapping[Hashable, list[str]],
    systems: Mapping[str, Mapping[Hashable, str]],
    metrics: Iterable[str] = _SCORER_GROUPS,
) -> dict[str, dict[str, Any]]:
    """:func:`coco_caption_scores` for several systems (e.g. variants) at once.

    Equivalent to calling :func:`coco_caption_scores` per system, but tokenizes all
    captions in one PTBTokenizer call and starts each scorer (METEOR's JVM) only once.

    Args:
        references: ``{id: [reference caption, ...]}``.
        systems: ``{system name: {id: generated caption}}``.
        metrics: scorer groups to run.

    Returns:
        ``{system name: coco_caption_scores-style result}``.
    """
    groups = [m.lower() for m in metrics]
    unknown = set(groups) - set(_SCORER_GROUPS)
    if unknown:
        raise ValueError(f"unknown metric group(s): {sorted(unknown)}")
    has_java = java_available()
    if not has_java:
        logger.warning("java not found: using a simple regex tokenizer instead of PTBTokenizer")
    results: dict[str, dict[str, Any]] = {}
    ids_of: dict[str, list[Hashable]] = {}
    for name, cands in systems.items():
        ids = [i for i in cands if i in references and len(references[i]) > 0]
        n_missing = len(cands) - len(ids)
        if n_missing:
            logger.warning("%s: %d candidate(s) have no reference caption and are not scored",
                           name, n_missing)
        ids_of[name] = ids
        results[name] = {"scores": {}, "skipped": {}, "n_scored": len(ids),
                         "n_missing_reference": n_missing,
                         "tokenizer": "ptb" if has_java else "simple"}
        if not ids:
            for g in groups:
                for metric in _group_names(g):
                    results[name]["skipped"][metric] = "no candidate with a reference"
    active = [n for n in systems if ids_of[n]]
    if not active or not groups:
        return results

    all_ids = list(dict.fromkeys(i for n in active for i in ids_of[n]))
    gts_all = _tokenize({i: list(references[i]) for i in all_ids}, has_java)
    # One tokenizer call for every system's captions; keys are positions.
    keys = [(n, i) for n in active for i in ids_of[n]]
    raw = {k: [systems[n][i] or ""] for k, (n, i) in enumerate(keys)}
    tok = _tokenize(raw, has_java)
    res_of: dict[str, dict[Hashable, list[str]]] = {n: {} for n in active}
    for k, (n, i) in enumerate(keys):
        text = tok.get(k, [""])[0]
        # Empty candidates make some scorers choke; METEOR needs at least one token.
        res_of[n][i] = [text if text.strip() else "<empty>"]

    for group in groups:
        names = _group_names(group)
        scorer, reason = _make_scorer(group, has_java)
        if scorer is None:
            logger.info("skipping %s: %s", "/".join(names), reason)
            for n in active:
                results[n]["skipped"].update({m: reason for m in names})
            continue
        try:
            for n in active:
                gts = {i: gts_all[i] for i in ids_of[n]}
                try:
                    with contextlib.redirect_stdout(io.StringIO()) as chatter:  # Bleu prints
                        score, _ = scorer.compute_score(gts, res_of[n])
                    if chatter.getvalue().strip():
                        logger.debug("%s/%s: %s", n, group, chatter.getvalue().strip())
                except Exception as exc:  # noqa: BLE001 - a broken scorer must not kill the report
                    logger.warning("%s scorer failed on %s: %s", group, n, exc)
                    results[n]["skipped"].update(
                        {m: f"scorer failed: {type(exc).__name__}: {exc}" for m in names})
                    continue
                values = score if isinstance(score, list) else [score]
                for metric, value in zip(names, values):
                    results[n]["scores"][metric] = float(value)
        finally:
            _close_scorer(scorer)
    return results


def _group_names(group: str) -> list[str]:
    return {"bleu": ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"], "meteor": ["METEOR"],
            "rouge": ["ROUGE_L"], "cider": ["CIDEr"], "spice": ["SPICE"]}[group]


def _make_scorer(group: str, has_java: bool) -> tuple[Any, str]:
    """Builds a pycocoevalcap scorer or returns ``(None, reason)`` when unavailable."""
    if group == "bleu":
        from pycocoevalcap.bleu.bleu import Bleu
        return Bleu(4), ""
    if group == "rouge":
        from pycocoevalcap.rouge.rouge import Rouge
        return Rouge(), ""
    if group == "cider":
        from pycocoevalcap.cider.cider import Cider
        return Cider(), ""
    if group == "meteor":
        if not has_java:
            return None, "java not found on PATH (METEOR 1.5 is a java program)"
        from pycocoevalcap.meteor.meteor import Meteor
        return Meteor(), ""
    ok, reason = spice_status()
    if not ok:
        return None, reason
    from pycocoevalcap.spice.spice import Spice
    return Spice(), ""


def _close_scorer(scorer: Any) -> None:
    """Stops METEOR's java subprocess now instead of at garbage collection.

    The pipe and process handle are kept, so pycocoevalcap's own ``__del__`` (close,
    kill, wait) later runs as harmless no-ops.
    """
    proc = getattr(scorer, "meteor_p", None)
    if proc is None:
        return
    try:
        proc.stdin.close()
        proc.kill()
        proc.wait(timeout=10)
    except Exception:  # noqa: BLE001 - best effort cleanup
        logger.debug("could not stop the METEOR subprocess", exc_info=True)


# --------------------------------------------------------------------------------- CHAIR
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
    """Rule-based English singularization sufficient for COCO object words.

    Irregular plurals come from a small table (``men -> man``, ``knives -> knife``,
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
    COCO instance categories (:func:`eval.caption_data.image_objects_from_instances`),
    optionally united with the objects mentioned in the reference captions
    (:func:`image_objects_from_captions`), as in the original paper.

    Args:
        candidates: ``{image id: generated caption}``.
        image_objects: ``{image id: set of category names}``; captions whose id is
            missing here are not scored (counted in ``n_missing_objects``).
        synonyms: ``{singular word or two-word phrase: category}``; default
            :data:`eval.coco_synonyms.COCO_SYNONYMS`.
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
        eval.caption_data.CaptionDataError: unreadable or malformed file.
    """
    from eval.caption_data import CaptionDataError, read_json

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
        raise CaptionDataError(f"malformed COCO instances data: missing key {exc}") from None
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


# ---------------------------------------------------------------------------- closeness
def _words(text: str | None) -> list[str]:
    return re.findall(r"\w+", (text or "").lower())


def _levenshtein(a: list[str], b: list[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def _f1(overlap: int, n_a: int, n_b: int) -> float:
    if n_a == 0 and n_b == 0:
        return 1.0
    if overlap == 0:
        return 0.0
    p, r = overlap / n_a, overlap / n_b
    return 2 * p * r / (p + r)


def edit_similarity(a: str, b: str) -> float:
    """``1 - lev(words(a), words(b)) / max(|words(a)|, |words(b)|)``; 1.0 if both empty."""
    wa, wb = _words(a), _words(b)
    if not wa and not wb:
        return 1.0
    return 1.0 - _levenshtein(wa, wb) / max(len(wa), len(wb))


def unigram_f1(a: str, b: str) -> float:
    """F1 of the bag-of-words overlap: ``|A ∩ B|`` counted with multiplicity."""
    wa, wb = _words(a), _words(b)
    return _f1(sum((Counter(wa) & Counter(wb)).values()), len(wa), len(wb))


def rouge_l_f1(a: str, b: str) -> float:
    """ROUGE-L F1 (beta = 1): ``2PR/(P+R)`` with ``P = LCS/|a|``, ``R = LCS/|b|``."""
    wa, wb = _words(a), _words(b)
    return _f1(_lcs(wa, wb), len(wa), len(wb))


def closeness_to_reference_variant(
    texts_variant: Mapping[Hashable, str],
    texts_none: Mapping[Hashable, str],
) -> dict[str, Any]:
    """How close a variant's outputs are to the unmodified model's outputs.

    Texts are compared per id (same image, same prompt) after lower-casing and
    splitting into word tokens ``\\w+`` (punctuation dropped).  For a pair (v, n) with
    token lists V and N:

    * ``identical``: 1 if V == N, else 0 (so punctuation/case-only changes count as
      identical);
    * ``edit_similarity``: ``1 - Lev(V, N) / max(|V|, |N|)`` with word-level
      Levenshtein distance (insert/delete/substitute cost 1);
    * ``unigram_f1``: ``2PR/(P+R)``, ``P = m/|V|``, ``R = m/|N|``, m the size of the
      multiset intersection of V and N;
    * ``rouge_l_f1``: the same with m = length of the longest common subsequence.

    Two empty texts score 1 everywhere; one empty text scores 0.  Each measure is the
    mean over the ids present in both mappings.

    Returns:
        ``{"identical", "edit_similarity", "unigram_f1", "rouge_l_f1", "n_pairs",
        "n_unpaired"}``; means are ``None`` when there is no pair.
    """
    ids = [i for i in texts_variant if i in texts_none]
    n_unpaired = len(set(texts_variant) ^ set(texts_none))
    out: dict[str, Any] = {"identical": None, "edit_similarity": None, "unigram_f1": None,
                           "rouge_l_f1": None, "n_pairs": len(ids), "n_unpaired": n_unpaired}
    if not ids:
        return out
    sums = Counter()
    for i in ids:
        v, n = texts_variant[i], texts_none[i]
        sums["identical"] += float(_words(v) == _words(n))
        sums["edit_similarity"] += edit_similarity(v, n)
        sums["unigram_f1"] += unigram_f1(v, n)
        sums["rouge_l_f1"] += rouge_l_f1(v, n)
    for k in ("identical", "edit_similarity", "unigram_f1", "rouge_l_f1"):
        out[k] = sums[k] / len(ids)
    return out


__all__ = [
    "ALL_CAPTION_METRICS", "caption_objects", "chair_scores", "closeness_to_reference_variant",
    "coco_caption_scores", "coco_caption_scores_multi", "edit_similarity", "image_objects_from_captions",
    "image_objects_from_instances", "java_available", "rouge_l_f1", "singularize",
    "spice_status", "unigram_f1",
]
