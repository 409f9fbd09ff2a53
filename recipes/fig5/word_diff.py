"""Word-level difference of a text against a reference, and its Markdown and HTML rendering.

Fig. 5 of the paper shows what a skip changes in a description. Words are runs of
non-whitespace; the diff is :class:`difflib.SequenceMatcher`'s over the two word lists (no junk
heuristic), and each rendering marks the words of ``text`` that are not in the reference:

* ``insert``: in ``text`` only (inserted, or replacing reference words);
* ``delete``: in the reference only (dropped), placed before the words that replaced them;
* ``equal``: in both.
"""

from __future__ import annotations

import difflib
import html
import re

_WORD = re.compile(r"\S+")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_~|<>\[\]])")


def diff_words(reference: str, text: str) -> list[tuple[str, str]]:
    """``(op, word)`` pairs in reading order, ``op`` one of ``"equal"``, ``"insert"``, ``"delete"``."""
    old, new = _WORD.findall(reference), _WORD.findall(text)
    pairs: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "equal":
            pairs += [("equal", w) for w in new[j1:j2]]
            continue
        pairs += [("delete", w) for w in old[i1:i2]]
        pairs += [("insert", w) for w in new[j1:j2]]
    return pairs


def markdown_escape(text: str) -> str:
    """``text`` with Markdown's and HTML's special characters backslash-escaped (safe in a table cell)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _render_diff(reference: str, text: str, show_deleted: bool, escape, inserted: str, deleted: str) -> str:
    """``text``'s words escaped and joined by spaces, inserted ones in ``inserted`` (a format with ``{}``),
    dropped reference words, with ``show_deleted``, in ``deleted``."""
    marks = {"equal": "{}", "insert": inserted, "delete": deleted if show_deleted else None}
    return " ".join(marks[op].format(escape(word)) for op, word in diff_words(reference, text) if marks[op])


def markdown_diff(reference: str, text: str, show_deleted: bool = True) -> str:
    """``text`` with inserted or changed words in **bold** and, with ``show_deleted``, dropped ones ~~struck~~."""
    return _render_diff(reference, text, show_deleted, markdown_escape, "**{}**", "~~{}~~")


def html_diff(reference: str, text: str, show_deleted: bool = True) -> str:
    """``text`` as HTML: ``<ins>`` around inserted or changed words, with ``show_deleted`` ``<del>`` around dropped ones."""
    return _render_diff(reference, text, show_deleted, html.escape, "<ins>{}</ins>", "<del>{}</del>")
