"""Tokenizer and singularizer for CHAIR: nltk and pattern when present, offline stand-ins otherwise.

The original CHAIR (``utils/chair.py`` of LisaAnne/Hallucination, whose ``requirements.txt`` pins
``nltk==3.2.5`` and ``pattern==3.6``) lower-cases a caption, splits it with
``nltk.word_tokenize`` and singularizes every token with ``pattern.en.singularize``. Neither is a
dependency of lvlm_skip: nltk's tokenizer also needs its Punkt model, a separate download, and
pattern 3.6 pulls in mysqlclient, lxml and more. This module offers, behind two plain callables:

* :func:`resolve_text_tools`: ``nltk.word_tokenize`` when nltk and its Punkt data load, else
  :func:`treebank_tokenize`; ``pattern.en.singularize`` when pattern imports, else
  :func:`singularize_noun`. Each choice is logged once.
* :func:`singularize_noun`: pattern 3.6's ``singularize`` for nouns, re-expressed from the rule
  tables of ``pattern/text/en/inflect.py`` (clips/pattern, unchanged since commit
  e18fd2a5d6416d7ffdbd83c823027e1111d34af2, the file released as 3.6). The tables below are
  pattern's (BSD-3, Copyright (c) 2010 University of Antwerp; the singular rules come from Bermi
  Ferrer Martinez's Inflector, Copyright (c) 2006, permissive licence), including its quirks:
  ``bus`` -> ``bu``, ``glass`` -> ``glas``, ``tennis`` -> ``tenni``, ``ties`` -> ``ty`` (its
  ``^tie`` entry is compared literally, caret included), ``safari`` -> ``safarus`` (its
  ``[octop|vir]`` is a character class), and "a word that is the END of an uninflected or
  uncountable word is left alone" (``ears`` stays, being the end of ``shears``). The one known
  divergence: pattern under Python 2 iterates its irregular-plural dict in hash order, this
  module in table order; that matters only for a word ending in two irregular plurals, and no
  word does (checked by the tests).
* :func:`treebank_tokenize`: nltk 3.2.5's ``word_tokenize`` re-expressed: its Treebank regular
  expressions, plus the three unicode-quote rules that 3.2.5 adds in ``nltk/tokenize/__init__``,
  applied to each sentence of :func:`split_sentences`. That splitter stands in for the Punkt
  model: it breaks after ``?``, ``!`` and after a token ending in one period that is followed by
  white space or closing punctuation, unless that token is an ellipsis, a number, a single letter
  or contains an inner period (``e.g.``). Punkt also keeps learnt abbreviations (``dr.``, ``st.``)
  and collocations from breaking; this splitter breaks there. A break only decides whether a
  period is split off the token before it, so CHAIR mentions can differ only where Punkt would
  take an object word followed by ``". "`` for an abbreviation. nltk 3.5 and later tokenize with
  ``NLTKWordTokenizer`` (and Punkt's ``punkt_tab`` data), which splits some punctuation
  differently from 3.2.5; mentions differ only where such punctuation is glued to an object word.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable

logger = logging.getLogger(__name__)

Tokenize = Callable[[str], list[str]]
"""Splits a (lower-cased) caption into word tokens."""
Singularize = Callable[[str], str]
"""Maps one token to its singular form."""


# --------------------------------------------------------------------------- choosing the tools
@functools.lru_cache(maxsize=1)
def nltk_word_tokenize() -> Tokenize | None:
    """``nltk.word_tokenize`` if nltk imports and its Punkt data is installed, else None."""
    try:
        import nltk  # optional (not a dependency), and 2 s to import: only when CHAIR picks its tools
    except ImportError:
        return None
    try:
        nltk.word_tokenize("a dog. a cat.")
    except LookupError:
        return None
    return nltk.word_tokenize


@functools.lru_cache(maxsize=1)
def pattern_singularize() -> Singularize | None:
    """``pattern.en.singularize`` if pattern imports, else None."""
    try:
        from pattern.en import singularize  # optional, not a dependency
    except ImportError:
        return None
    return singularize


@functools.lru_cache(maxsize=1)
def _default_tools() -> tuple[Tokenize, Singularize]:
    tokenize = nltk_word_tokenize()
    if tokenize is None:
        logger.info("CHAIR tokenizer: offline Treebank stand-in (nltk or its Punkt data not found)")
        tokenize = treebank_tokenize
    singularize = pattern_singularize()
    if singularize is None:
        logger.info("CHAIR singularizer: offline stand-in for pattern.en.singularize (pattern not found)")
        singularize = singularize_noun
    return tokenize, singularize


def resolve_text_tools(
    tokenize: Tokenize | None = None, singularize: Singularize | None = None
) -> tuple[Tokenize, Singularize]:
    """The tokenizer and singularizer to use: the given ones, else the defaults described above."""
    default_tokenize, default_singularize = _default_tools()
    return tokenize or default_tokenize, singularize or default_singularize


# --------------------------------------------------------------------------- singularizer
# pattern 3.6, pattern/text/en/inflect.py: `singular_rules`, tried in this order; the first
# whose pattern is found rewrites the word. Kept verbatim, including the character class
# "[octop|vir]" and the rules written without (?i).
_SINGULAR_RULES: tuple[tuple[str, str], ...] = (
    (r"(?i)(.)ae$", r"\1a"),
    (r"(?i)(.)itis$", r"\1itis"),
    (r"(?i)(.)eaux$", r"\1eau"),
    (r"(?i)(quiz)zes$", r"\1"),
    (r"(?i)(matr)ices$", r"\1ix"),
    (r"(?i)(ap|vert|ind)ices$", r"\1ex"),
    (r"(?i)^(ox)en", r"\1"),
    (r"(?i)(alias|status)es$", r"\1"),
    (r"(?i)([octop|vir])i$", r"\1us"),
    (r"(?i)(cris|ax|test)es$", r"\1is"),
    (r"(?i)(shoe)s$", r"\1"),
    (r"(?i)(o)es$", r"\1"),
    (r"(?i)(bus)es$", r"\1"),
    (r"(?i)([m|l])ice$", r"\1ouse"),
    (r"(?i)(x|ch|ss|sh)es$", r"\1"),
    (r"(?i)(m)ovies$", r"\1ovie"),
    (r"(?i)(.)ombies$", r"\1ombie"),
    (r"(?i)(s)eries$", r"\1eries"),
    (r"(?i)([^aeiouy]|qu)ies$", r"\1y"),
    (r"([aeo]l)ves$", r"\1f"),
    (r"([^d]ea)ves$", r"\1f"),
    (r"arves$", "arf"),
    (r"erves$", "erve"),
    (r"([nlw]i)ves$", r"\1fe"),
    (r"(?i)([lr])ves$", r"\1f"),
    (r"([aeo])ves$", r"\1ve"),
    (r"(?i)(sive)s$", r"\1"),
    (r"(?i)(tive)s$", r"\1"),
    (r"(?i)(hive)s$", r"\1"),
    (r"(?i)([^f])ves$", r"\1fe"),
    (r"(?i)(^analy)ses$", r"\1sis"),
    (r"(?i)((a)naly|(b)a|(d)iagno|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$", r"\1\2sis"),
    (r"(?i)(.)opses$", r"\1opsis"),
    (r"(?i)(.)yses$", r"\1ysis"),
    (r"(?i)(h|d|r|o|n|b|cl|p)oses$", r"\1ose"),
    (r"(?i)(fruct|gluc|galact|lact|ket|malt|rib|sacchar|cellul)ose$", r"\1ose"),
    (r"(?i)(.)oses$", r"\1osis"),
    (r"(?i)([ti])a$", r"\1um"),
    (r"(?i)(n)ews$", r"\1ews"),
    (r"(?i)s$", ""),
)
_COMPILED_RULES = tuple((re.compile(pattern), replacement) for pattern, replacement in _SINGULAR_RULES)

# pattern 3.6: `singular_uninflected` and `singular_uncountable`. A word that is the END of one of
# these is returned unchanged (pattern tests `x.endswith(word)`, not equality).
_UNINFLECTED: tuple[str, ...] = (
    "bison", "debris", "headquarters", "pincers", "trout", "bream", "diabetes", "herpes", "pliers",
    "tuna", "breeches", "djinn", "high-jinks", "proceedings", "whiting", "britches", "eland",
    "homework", "rabies", "wildebeest", "carp", "elk", "innings", "salmon", "chassis", "flounder",
    "jackanapes", "scissors", "christmas", "gallows", "mackerel", "series", "clippers", "georgia",
    "measles", "shears", "cod", "graffiti", "mews", "species", "contretemps", "mumps", "swine",
    "corps", "news", "swiss",
)
_UNCOUNTABLE: tuple[str, ...] = (
    "advice", "equipment", "happiness", "luggage", "news", "software", "bread", "fruit",
    "information", "mathematics", "progress", "understanding", "butter", "furniture", "ketchup",
    "mayonnaise", "research", "water", "cheese", "garbage", "knowledge", "meat", "rice",
    "electricity", "gravel", "love", "mustard", "sand",
)
# pattern 3.6: `singular_ie`; a word ending in one of these plus "s" loses the "s". "^pie" and
# "^tie" are compared literally (caret included), so they never match: "ties" -> "ty".
_IE_WORDS: tuple[str, ...] = (
    "alergie", "cutie", "hoagie", "newbie", "softie", "veggie", "auntie", "doggie", "hottie",
    "nightie", "sortie", "weenie", "beanie", "eyrie", "indie", "oldie", "stoolie", "yuppie",
    "birdie", "freebie", "junkie", "^pie", "sweetie", "zombie", "bogie", "goonie", "laddie",
    "pixie", "techie", "bombie", "groupie", "laramie", "quickie", "^tie", "collie", "hankie",
    "lingerie", "reverie", "toughie", "cookie", "hippie", "meanie", "rookie", "valkyrie",
)
# pattern 3.6: `singular_irregular`; a word ENDING in a key has that ending replaced.
_IRREGULAR: dict[str, str] = {
    "atlantes": "atlas", "atlases": "atlas", "axes": "axe", "beeves": "beef",
    "brethren": "brother", "children": "child", "corpora": "corpus", "corpuses": "corpus",
    "ephemerides": "ephemeris", "feet": "foot", "ganglia": "ganglion", "geese": "goose",
    "genera": "genus", "genii": "genie", "graffiti": "graffito", "helves": "helve", "kine": "cow",
    "leaves": "leaf", "loaves": "loaf", "men": "man", "mongooses": "mongoose", "monies": "money",
    "moves": "move", "mythoi": "mythos", "numena": "numen", "occipita": "occiput",
    "octopodes": "octopus", "opera": "opus", "opuses": "opus", "our": "my", "oxen": "ox",
    "penes": "penis", "penises": "penis", "people": "person", "sexes": "sex",
    "soliloquies": "soliloquy", "teeth": "tooth", "testes": "testis", "trilbys": "trilby",
    "turves": "turf", "zoa": "zoon",
}
# pattern 3.6: `plural_prepositions`; "mothers-in-law" singularizes its first part only.
_PLURAL_PREPOSITIONS = frozenset((
    "about", "before", "during", "of", "till", "above", "behind", "except", "off", "to", "across",
    "below", "for", "on", "under", "after", "beneath", "from", "onto", "until", "among", "beside",
    "in", "out", "unto", "around", "besides", "into", "over", "upon", "at", "between", "near",
    "since", "with", "athwart", "betwixt",
))


def singularize_noun(word: str) -> str:
    """The singular of ``word`` as ``pattern.en.singularize(word)`` (pattern 3.6) returns it.

    The steps, in pattern's order: a hyphenated compound whose second part is a preposition
    singularizes its first part; a trailing apostrophe becomes ``'s`` after the rest is
    singularized; a word that ends an uninflected or uncountable word is kept; ``-ie`` words lose
    their ``s``; irregular plural endings are replaced; else the first matching suffix rule applies.

    Args:
        word: one token.

    Returns:
        Its singular form (``word`` itself when no rule applies).
    """
    parts = word.split("-")
    if len(parts) > 1 and parts[1] in _PLURAL_PREPOSITIONS:
        return singularize_noun(parts[0]) + "-" + "-".join(parts[1:])
    if word.endswith("'"):
        return singularize_noun(word[:-1]) + "'s"
    lower = word.lower()
    if any(kept.endswith(lower) for kept in _UNINFLECTED + _UNCOUNTABLE):
        return word
    if any(lower.endswith(ie_word + "s") for ie_word in _IE_WORDS):
        return lower
    for plural, singular in _IRREGULAR.items():
        if lower.endswith(plural):
            return re.sub("(?i)" + plural + "$", singular, word)
    for rule, replacement in _COMPILED_RULES:
        if rule.search(word):
            return rule.sub(replacement, word)
    return word


# --------------------------------------------------------------------------- tokenizer
# nltk 3.2.5, nltk/tokenize/treebank.py (TreebankWordTokenizer) with the three rules that
# nltk/tokenize/__init__.py prepends for unicode quotes; each list is applied in order.
_STARTING_QUOTES = (
    (re.compile("([«“‘])"), r" \1 "),
    (re.compile(r'^"'), "``"),
    (re.compile(r"(``)"), r" \1 "),
    (re.compile(r'([ (\[{<])"'), r"\1 `` "),
)
_PUNCTUATION = (
    (re.compile(r"([^\.])(\.)([\]\)}>\"\'»”’ ]*)\s*$"), r"\1 \2 \3 "),
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.\.\."), r" ... "),
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile(r"([^\.])(\.)([\]\)}>\"\']*)\s*$"), r"\1 \2\3 "),
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"([^'])' "), r"\1 ' "),
    (re.compile(r"[\]\[\(\)\{\}\<\>]"), r" \g<0> "),
    (re.compile(r"--"), r" -- "),
)
_ENDING_QUOTES = (
    (re.compile("([»”’])"), r" \1 "),
    (re.compile(r'"'), " '' "),
    (re.compile(r"(\S)(\'\')"), r"\1 \2 "),
    (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
)
# Robert MacIntyre's contractions as listed by nltk 3.2.5 (CONTRACTIONS2 then CONTRACTIONS3).
_CONTRACTIONS = tuple(re.compile(p) for p in (
    r"(?i)\b(can)(not)\b", r"(?i)\b(d)('ye)\b", r"(?i)\b(gim)(me)\b", r"(?i)\b(gon)(na)\b",
    r"(?i)\b(got)(ta)\b", r"(?i)\b(lem)(me)\b", r"(?i)\b(mor)('n)\b", r"(?i)\b(wan)(na)\s",
    r"(?i) ('t)(is)\b", r"(?i) ('t)(was)\b",
))

# Punkt's candidate contexts (nltk 3.2.5, PunktLanguageVars): a token ending in . ? or !, followed
# by a character that cannot be inside a word, or by white space and a next token.
_SENTENCE_END = re.compile(r"""\S*[.?!](?=(?P<after>[?!)";}\]*:@'({\[]|\s+(?P<next>\S+)))""")
# Punkt's realignment: closing quotes and brackets after the break belong to the sentence before.
_REALIGN = re.compile(r"""["')\]}]+?(?:\s+|(?=--)|$)""")
_NUMBER = re.compile(r"[\d.,:/-]*\d[\d.,:/-]*")


def _breaks_sentence(candidate: str) -> bool:
    """Whether ``candidate`` (a token ending in . ? or !) ends a sentence, approximating Punkt."""
    if candidate.endswith(("?", "!")):
        return True
    word = candidate.lstrip("\"'`([{<")[:-1]
    is_initial = len(word) == 1 and word.isalpha()
    return bool(word) and "." not in word and not is_initial and not _NUMBER.fullmatch(word)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: an offline stand-in for nltk's Punkt model (see the module docstring)."""
    slices, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if not _breaks_sentence(match.group()):
            continue
        slices.append([start, match.end()])
        start = match.start("next") if match.group("next") else match.end()
    slices.append([start, len(text.rstrip())])
    for before, after in zip(slices, slices[1:]):
        moved = _REALIGN.match(text, after[0])
        if moved:
            before[1] = after[0] + len(moved.group().rstrip())
            after[0] = moved.end()
    return [text[a:b] for a, b in slices if text[a:b]]


def _tokenize_sentence(sentence: str) -> list[str]:
    text = sentence
    for rule, replacement in _STARTING_QUOTES + _PUNCTUATION:
        text = rule.sub(replacement, text)
    text = " " + text + " "
    for rule, replacement in _ENDING_QUOTES:
        text = rule.sub(replacement, text)
    for rule in _CONTRACTIONS:
        text = rule.sub(r" \1 \2 ", text)
    return text.split()


def treebank_tokenize(text: str) -> list[str]:
    """Word tokens of ``text`` as nltk 3.2.5's ``word_tokenize`` gives them, without Punkt data.

    Args:
        text: a caption (CHAIR lower-cases it first).

    Returns:
        The tokens of each sentence of :func:`split_sentences`, in order.
    """
    return [token for sentence in split_sentences(text) for token in _tokenize_sentence(sentence)]
