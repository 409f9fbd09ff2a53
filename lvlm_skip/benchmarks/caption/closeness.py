"""How close a variant's answers are to the unmodified model's (``none``) answers for the same items.

The paper's claim that skip.1 stays "semantically close" to the original, measured on word
tokens: identical outputs, word edit similarity, unigram F1 and ROUGE-L F1 (definitions in
:func:`closeness_to_reference_variant`). Plain Python, no dependencies.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any, Hashable

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
