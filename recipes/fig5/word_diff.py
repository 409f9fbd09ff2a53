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


def markdown_diff(reference: str, text: str, show_deleted: bool = True) -> str:
    """``text`` with inserted or changed words in **bold** and, with ``show_deleted``, dropped ones ~~struck~~."""
    parts = []
    for op, word in diff_words(reference, text):
        if op == "insert":
            parts.append(f"**{markdown_escape(word)}**")
        elif op == "delete" and show_deleted:
            parts.append(f"~~{markdown_escape(word)}~~")
        elif op == "equal":
            parts.append(markdown_escape(word))
    return " ".join(parts)


def html_diff(reference: str, text: str, show_deleted: bool = True) -> str:
    """``text`` as HTML: ``<ins>`` around inserted or changed words, with ``show_deleted`` ``<del>`` around dropped ones."""
    parts = []
    for op, word in diff_words(reference, text):
        if op == "insert":
            parts.append(f"<ins>{html.escape(word)}</ins>")
        elif op == "delete" and show_deleted:
            parts.append(f"<del>{html.escape(word)}</del>")
        elif op == "equal":
            parts.append(html.escape(word))
    return " ".join(parts)
