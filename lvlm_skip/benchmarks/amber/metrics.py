"""AMBER metrics as pure functions, counting exactly like the official ``inference.py``.

Usage from code::

    from lvlm_skip.data.amber import load_amber
    from lvlm_skip.benchmarks.amber.metrics import score_generative, score_discriminative
    from lvlm_skip.benchmarks.language import pick_backend

    data = load_amber("AMBER/data")
    backend, name = pick_backend("auto", data.vocabulary())
    g = score_generative({1: "A man walks a dog."}, data.annotations, data.relation,
                         data.safe_words, backend)
    d = score_discriminative({1005: "Yes"}, data.annotations)

Every accumulator starts at the official initial values (``*_num = 0.001``,
``*_score = 0``, see the release's ``metrics.txt``), so empty groups give 0.0
instead of a division error, and every metric is ``round(x * 100, 1)``.

Generative definitions (per response, nouns = backend nouns that appear in
``relation.json`` as a key or an associated word):

* a noun that is a safe word is ignored;
* a noun equal to a truth word or to a word associated with one marks that truth
  word as covered (the first match in the list ``assoc(truth_1)+...+truth`` wins);
* otherwise, a noun equal to a hallu word or its associate marks that hallu word
  as mentioned; then the first hallu candidate with ``similarity > threshold``
  is marked too; if some truth candidate has ``similarity > threshold`` it is
  marked covered and the noun is not a hallucination, else the noun is one.

* ``CHAIR`` = hallucinated nouns / nouns (over all responses);
* ``Cover`` = covered truth words / truth words;
* ``Hal``   = 100 - % of responses with no hallucinated noun;
* ``Cog``   = mentioned hallu words / hallu words.

Discriminative definitions (the positive class is "No"): the official scorer
compares the response string with ``"Yes"``/``"No"`` exactly; free-form model
text is first mapped by :func:`normalize_yes_no`. With truth t and answer a:

* ``Accuracy``  = #(t=yes, a=Yes or t=no, a=No) / #questions;
* ``Precision`` = #(a=No, t=no) / #(a=No);
* ``Recall``    = #(a=No, t=no) / #(t=no);
* ``F1`` = 2PR / (P + R + 0.0001) on the rounded P, R fractions (0.001 for existence).

Groups: existence = ``discriminative-hallucination``; attribute = state + number +
action (``discriminative-attribute-*``); relation = every other yes/no type
(``discriminative-relation`` and ``relation``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...data.amber import GENERATIVE
from ..language import LanguageBackend

_INIT_NUM = 0.001

#: Discriminative group prefix of the official accumulators, by annotation type.
_GROUP = {
    "discriminative-attribute-state": "as",
    "discriminative-attribute-number": "an",
    "discriminative-attribute-action": "aa",
    "discriminative-hallucination": "ha",
}
_ASSO = "asso"


def normalize_yes_no(text: str) -> str:
    """Maps free-form model text to ``"Yes"``/``"No"`` for the official comparison.

    Definition: ``"Yes"`` if ``"yes"`` is a substring of ``text.lower()``, else
    ``"No"`` if ``"no"`` is a substring of it, else ``text`` unchanged (which the
    official scorer counts as neither answer). Substring, not word, matching is
    the usual convention of LLaVA-family AMBER scripts and is kept on purpose.
    """
    lower = text.lower()
    if "yes" in lower:
        return "Yes"
    if "no" in lower:
        return "No"
    return text


def _mark(flags: list[int], idx: list[int], j: int, n_direct: int) -> None:
    """Official marking: an associate at ``j`` marks its source word, a direct word marks itself."""
    if j < len(idx) - n_direct:
        flags[idx[j] + len(idx) - n_direct] = 1
    else:
        flags[j] = 1


def _pct(score: float, num: float) -> float:
    return round(score / num * 100, 1)


def score_generative(
    responses: Mapping[int, str],
    annotations: Mapping[int, Mapping[str, Any]],
    relation: Mapping[str, Sequence[str]],
    safe_words: Sequence[str],
    backend: LanguageBackend,
    sim_threshold: float = 0.8,
) -> dict[str, float]:
    """Scores generative (captioning) responses like the official AMBER scorer.

    Args:
        responses: Annotation id -> model description. Ids whose annotation is not
            generative are ignored.
        annotations: Id -> ``{type, truth, hallu}`` records (``AmberData.annotations``).
        relation: Word -> associated words (``relation.json``).
        safe_words: Words never counted as hallucinations.
        backend: Noun extraction and word similarity (see :mod:`lvlm_skip.benchmarks.language`).
        sim_threshold: Words are near-synonyms when ``similarity > sim_threshold``.

    Returns:
        ``{"CHAIR", "Cover", "Hal", "Cog"}`` in percent (definitions in the module
        docstring) and ``"n_generative"``, the number of responses scored.
    """
    vocab = set(relation)
    for assoc in relation.values():
        vocab.update(assoc)
    global_safe = set(safe_words)
    chair_score, chair_num = 0, _INIT_NUM
    cover_score, cover_num = 0, _INIT_NUM
    hallu_score, hallu_num = 0, _INIT_NUM
    clean_score, clean_num = 0, _INIT_NUM
    count = 0
    for rid, text in responses.items():
        rec = annotations[rid]
        if rec["type"] != GENERATIVE:
            continue
        count += 1
        nouns = [n for n in backend.extract_nouns(text) if n in vocab]
        truth, hallu = list(rec["truth"]), list(rec.get("hallu", []))

        safe_cands: list[str] = []
        safe_list: list[int] = []
        for i, word in enumerate(truth):
            safe_cands += relation[word]
            safe_list += [i] * len(relation[word])
        safe_cands += truth
        safe_list += [0] * len(truth)
        ha_cands: list[str] = []
        ha_list: list[int] = []
        for i, word in enumerate(hallu):
            ha_cands += relation[word]
            ha_list += [i] * len(relation[word])
        ha_cands += hallu
        ha_list += [0] * len(hallu)
        n_safe, n_ha = len(truth), len(hallu)
        hallucinated = [0] * len(nouns)

        for k, noun in enumerate(nouns):
            if noun in global_safe:
                continue
            if noun in safe_cands:
                _mark(safe_list, safe_list, safe_cands.index(noun), n_safe)
                continue
            if noun in ha_cands:
                _mark(ha_list, ha_list, ha_cands.index(noun), n_ha)
            for j, cand in enumerate(ha_cands):
                if backend.similarity(noun, cand) > sim_threshold:
                    _mark(ha_list, ha_list, j, n_ha)
                    break
            similar_to_truth = False
            for j, cand in enumerate(safe_cands):
                if backend.similarity(noun, cand) > sim_threshold:
                    similar_to_truth = True
                    _mark(safe_list, safe_list, j, n_safe)
                    break
            if not similar_to_truth:
                hallucinated[k] = 1

        chair_score += sum(hallucinated)
        chair_num += len(hallucinated)
        # The official code slices [-n:]; with n == 0 both lists are empty anyway.
        cover_score += sum(safe_list[-n_safe:]) if n_safe else 0
        cover_num += n_safe
        hallu_score += sum(ha_list[-n_ha:]) if n_ha else 0
        hallu_num += n_ha
        clean_score += int(sum(hallucinated) == 0)
        clean_num += 1
    return {
        "CHAIR": _pct(chair_score, chair_num),
        "Cover": _pct(cover_score, cover_num),
        "Hal": round(100 - clean_score / clean_num * 100, 1),
        "Cog": _pct(hallu_score, hallu_num),
        "n_generative": count,
    }


def _prf(acc: dict[str, float], prefixes: Sequence[str], f1_eps: float) -> dict[str, float]:
    def total(name: str) -> float:
        return sum(acc[f"{p}_{name}"] for p in prefixes)

    accuracy = _pct(total("correct_score"), total("correct_num"))
    precision = _pct(total("ans_no_score"), total("ans_no_num"))
    recall = _pct(total("no_score"), total("no_num"))
    p, r = precision / 100, recall / 100
    f1 = round(2 * p * r / (p + r + f1_eps) * 100, 1)
    return {"Accuracy": accuracy, "Precision": precision, "Recall": recall, "F1": f1}


def score_discriminative(
    responses: Mapping[int, str],
    annotations: Mapping[int, Mapping[str, Any]],
    normalize: bool = True,
) -> dict[str, float]:
    """Scores yes/no responses like the official AMBER scorer.

    Args:
        responses: Annotation id -> model answer. Ids of generative annotations
            are ignored.
        annotations: Id -> ``{type, truth}`` records.
        normalize: Map answers with :func:`normalize_yes_no` first; with False the
            answers must already be exactly ``"Yes"``/``"No"`` as the official
            scorer expects.

    Returns:
        ``Accuracy``, ``Precision``, ``Recall``, ``F1`` overall and prefixed with
        ``existence_``, ``attribute_``, ``state_``, ``number_``, ``action_`` and
        ``relation_`` (percent; definitions in the module docstring), plus
        ``n_discriminative``.
    """
    groups = (*_GROUP.values(), _ASSO, "qa")  # "qa": the official overall accumulators
    acc: dict[str, float] = {}
    for g in groups:
        for name in ("correct", "no", "ans_no"):
            acc[f"{g}_{name}_score"] = 0
            acc[f"{g}_{name}_num"] = _INIT_NUM
    count = 0
    for rid, text in responses.items():
        rec = annotations[rid]
        if rec["type"] == GENERATIVE:
            continue
        count += 1
        answer = normalize_yes_no(text) if normalize else text
        truth = rec["truth"]
        for g in ("qa", _GROUP.get(rec["type"], _ASSO)):
            acc[f"{g}_correct_num"] += 1
            if truth == "yes":
                if answer == "Yes":
                    acc[f"{g}_correct_score"] += 1
            else:
                acc[f"{g}_no_num"] += 1
                if answer == "No":
                    acc[f"{g}_correct_score"] += 1
                    acc[f"{g}_no_score"] += 1
            if answer == "No":
                acc[f"{g}_ans_no_num"] += 1
                if truth == "no":
                    acc[f"{g}_ans_no_score"] += 1

    out: dict[str, float] = dict(_prf(acc, ["qa"], 0.0001))
    sections = {
        "existence": (["ha"], 0.001),
        "attribute": (["as", "an", "aa"], 0.0001),
        "state": (["as"], 0.0001),
        "number": (["an"], 0.0001),
        "action": (["aa"], 0.0001),
        "relation": ([_ASSO], 0.0001),
    }
    for section, (prefixes, eps) in sections.items():
        for metric, value in _prf(acc, prefixes, eps).items():
            out[f"{section}_{metric}"] = value
    out["n_discriminative"] = count
    return out
