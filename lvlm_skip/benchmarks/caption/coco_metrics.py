"""The standard COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr, SPICE) via ``pycocoevalcap``.

Captions are tokenized with pycocoevalcap's ``PTBTokenizer`` (a java program), or, without
``java``, a regex tokenizer that lower-cases and drops the same punctuation. Metrics whose
requirements are missing (``java`` for METEOR, the Stanford CoreNLP jars for SPICE) are skipped
with the reason, never downloaded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Hashable

logger = logging.getLogger(__name__)

ALL_CAPTION_METRICS: tuple[str, ...] = (
    "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE",
)
SCORER_GROUPS: tuple[str, ...] = ("bleu", "meteor", "rouge", "cider", "spice")
# Same punctuation list as pycocoevalcap's PTBTokenizer (used by the java-free fallback).
_PTB_PUNCT = {"''", "'", "``", "`", "-lrb-", "-rrb-", "-lcb-", "-rcb-", ".", "?", "!",
              ",", ":", "-", "--", "...", ";"}
_SPICE_CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


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
        import pycocoevalcap.spice as spice_pkg  # the eval extra, optional
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
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # the eval extra, optional

        wrapped = {k: [{"caption": c} for c in v] for k, v in captions.items()}
        return PTBTokenizer().tokenize(wrapped)
    return {k: [_simple_tokenize(c) for c in v] for k, v in captions.items()}


def coco_caption_scores(
    references: Mapping[Hashable, list[str]],
    candidates: Mapping[Hashable, str],
    metrics: Iterable[str] = SCORER_GROUPS,
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
    metrics: Iterable[str] = SCORER_GROUPS,
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
    unknown = set(groups) - set(SCORER_GROUPS)
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
        from pycocoevalcap.bleu.bleu import Bleu  # the eval extra (optional): each scorer when asked for
        return Bleu(4), ""
    if group == "rouge":
        from pycocoevalcap.rouge.rouge import Rouge  # the eval extra, optional
        return Rouge(), ""
    if group == "cider":
        from pycocoevalcap.cider.cider import Cider  # the eval extra, optional
        return Cider(), ""
    if group == "meteor":
        if not has_java:
            return None, "java not found on PATH (METEOR 1.5 is a java program)"
        from pycocoevalcap.meteor.meteor import Meteor  # the eval extra, optional
        return Meteor(), ""
    ok, reason = spice_status()
    if not ok:
        return None, reason
    from pycocoevalcap.spice.spice import Spice  # the eval extra, optional
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
