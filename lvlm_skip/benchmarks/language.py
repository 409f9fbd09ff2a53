"""Language backends used by the AMBER generative metric.

A backend provides the two language operations of the official scorer:

* ``extract_nouns(text) -> list[str]``: tokenize, POS-tag and lemmatize ``text`` and
  return the lemmas of the tokens tagged as nouns, in text order, duplicates kept.
* ``similarity(word1, word2) -> float``: a similarity in [0, 1]; the scorer treats
  two words as near-synonyms when it is strictly greater than the threshold (0.8).

Two implementations exist:

* :class:`OfficialBackend`: exactly the official tools, nltk ``word_tokenize`` /
  ``pos_tag`` (tags starting with ``NN``) / ``WordNetLemmatizer`` and spaCy
  ``en_core_web_lg`` vector similarity. Imported lazily; usable only when nltk, its
  data packages and the spaCy model are installed.
* :class:`OfflineBackend`: a deterministic, dependency-free approximation. Tokens
  are ``[A-Za-z]+(?:-[A-Za-z]+)*`` runs; a token is lemmatized the way nltk's
  ``WordNetLemmatizer`` does for nouns (:func:`singular_candidates`: WordNet's morphy
  rules), with the annotation vocabulary standing in for WordNet's lexicon, and is
  a noun when its lemma belongs to that vocabulary (there is no POS tagger).
  Matching is case-sensitive as in the official scorer. Similarity is 1.0 for equal
  words and 0.0 otherwise, so near-synonyms only count through ``relation.json``.
  Scores from this backend can therefore differ slightly from the official ones; the
  report names the backend used.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from typing import Protocol, get_args, runtime_checkable

from ..config import LanguageBackendChoice

logger = logging.getLogger(__name__)


@runtime_checkable
class LanguageBackend(Protocol):
    """What :func:`lvlm_skip.benchmarks.amber.metrics.score_generative` needs from a language toolkit."""

    def extract_nouns(self, text: str) -> list[str]:
        """Returns the lemmas of the nouns of ``text`` in order."""

    def similarity(self, word1: str, word2: str) -> float:
        """Returns the similarity of two words in [0, 1]."""


class OfficialBackend:
    """nltk + spaCy ``en_core_web_lg``, as in the official ``inference.py``.

    Raises:
        RuntimeError: From the constructor if nltk, its data (punkt, the perceptron
            tagger, wordnet) or the spaCy model cannot be loaded.
    """

    def __init__(self) -> None:
        try:
            import nltk  # optional (AMBER's official backend), 2 s to import; this module is on the --help path
            from nltk.stem import WordNetLemmatizer  # optional, as above
            import spacy  # optional, as above

            self._nltk = nltk
            self._lemmatizer = WordNetLemmatizer()
            self._nlp = spacy.load("en_core_web_lg")
            # Fail now, not mid-run, when a data package is missing.
            self.extract_nouns("A dog sits on the grass.")
        except Exception as exc:  # ImportError, LookupError, OSError
            raise RuntimeError(f"official AMBER backend unavailable: {type(exc).__name__}: {exc}") from None

    def extract_nouns(self, text: str) -> list[str]:
        tokens = self._nltk.word_tokenize(text)
        tagged = self._nltk.pos_tag(tokens)
        return [self._lemmatizer.lemmatize(word) for word, pos in tagged if pos.startswith("NN")]

    @functools.lru_cache(maxsize=200_000)
    def similarity(self, word1: str, word2: str) -> float:
        return float(self._nlp(word1).similarity(self._nlp(word2)))


_TOKEN_RE = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")
#: WordNet's noun detachment rules (``morphy``), in nltk's order: suffix -> replacement.
NOUN_SUFFIX_RULES: tuple[tuple[str, str], ...] = (
    ("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
    ("men", "man"), ("ies", "y"),
)
#: An excerpt of WordNet's noun exception list (``noun.exc``): irregular plurals of everyday objects.
NOUN_EXCEPTIONS: dict[str, tuple[str, ...]] = {
    "children": ("child",), "feet": ("foot",), "teeth": ("tooth",), "mice": ("mouse",), "geese": ("goose",),
    "oxen": ("ox",), "knives": ("knife",), "wives": ("wife",), "lives": ("life",), "people": ("person",),
    "dice": ("die",), "lice": ("louse",), "calves": ("calf",), "halves": ("half",), "loaves": ("loaf",),
    "shelves": ("shelf",), "wolves": ("wolf",), "leaves": ("leaf",), "scarves": ("scarf",), "hooves": ("hoof",),
}


def singular_candidates(word: str) -> list[str]:
    """The lemma candidates of a noun, as WordNet's ``morphy`` (nltk's ``WordNetLemmatizer``) builds them.

    ``word`` itself first; then, if ``word`` is in :data:`NOUN_EXCEPTIONS`, its listed lemmas
    (and no rule); otherwise one application of each of :data:`NOUN_SUFFIX_RULES` whose suffix
    ``word`` ends with (``"glasses"`` -> ``"glasse"``, ``"glass"``). The lemmatizer keeps the
    candidates found in its lexicon and returns the shortest (:meth:`OfflineBackend.lemmatize`).
    This reproduces nltk's noun lemmatization, which AMBER's official scorer uses, up to the
    lexicon (the annotation vocabulary instead of WordNet) and morphy's rarely reached step 3
    (rules applied repeatedly when one application finds nothing).
    """
    if word in NOUN_EXCEPTIONS:
        return [word, *NOUN_EXCEPTIONS[word]]
    return [word] + [word[: -len(old)] + new for old, new in NOUN_SUFFIX_RULES if word.endswith(old)]


class OfflineBackend:
    """Deterministic fallback backend (see the module docstring).

    Args:
        vocabulary: Words that count as nouns (all annotation truth/hallu words,
            ``relation.json`` keys and values, safe words).
    """

    def __init__(self, vocabulary: Iterable[str]) -> None:
        self.vocabulary = frozenset(vocabulary)

    def lemmatize(self, word: str) -> str:
        """The shortest candidate of :func:`singular_candidates` in the vocabulary, else ``word`` (as nltk)."""
        found = [c for c in singular_candidates(word) if c in self.vocabulary]
        return min(found, key=len) if found else word

    def extract_nouns(self, text: str) -> list[str]:
        lemmas = (self.lemmatize(tok) for tok in _TOKEN_RE.findall(text))
        return [lemma for lemma in lemmas if lemma in self.vocabulary]

    def similarity(self, word1: str, word2: str) -> float:
        return 1.0 if word1 == word2 else 0.0


def pick_backend(prefer: LanguageBackendChoice = "auto", vocabulary: Iterable[str] = ()) -> tuple[LanguageBackend, str]:
    """Chooses a language backend.

    Args:
        prefer: ``"official"`` (fail if unavailable), ``"offline"``, or ``"auto"``
            (official when it loads, else offline).
        vocabulary: The noun vocabulary of the offline backend.

    Returns:
        The backend and its report name (``"official (nltk+spaCy en_core_web_lg)"``
        or ``"offline (vocabulary match, exact similarity)"``).

    Raises:
        RuntimeError: If ``prefer == "official"`` and it cannot be loaded.
        ValueError: On an unknown ``prefer``.
    """
    if prefer not in get_args(LanguageBackendChoice):
        raise ValueError(f"unknown backend {prefer!r}; expected auto, official or offline")
    if prefer in ("auto", "official"):
        try:
            return OfficialBackend(), "official (nltk+spaCy en_core_web_lg)"
        except RuntimeError as exc:
            if prefer == "official":
                raise
            logger.info("%s; using the offline backend (the report names it)", exc)
    return OfflineBackend(vocabulary), "offline (vocabulary match, exact similarity)"
