"""The scene language: the captioning prompts, the word splitter and every word a scene text can use."""

from __future__ import annotations

import re

from .catalogue import COLORS, KINDS, NUMBER_WORDS, OBJECTS, POSITION_PHRASE, POSITIONS
from .questions import OPPOSITE_RELATION

CAPTION_PROMPTS = ("Describe this image.", "Please describe this image in detail.")
"""Captioning prompts: AMBER's generative query and the paper's prompt."""


def vocabulary() -> list[str]:
    """Every word the captions, questions and answers can use (sorted, deterministic)."""
    words: set[str] = set()
    words.update(KINDS)
    words.update(v[0] for v in OBJECTS.values())
    words.update(COLORS)
    words.update(POSITIONS)
    words.update(NUMBER_WORDS.values())
    for text in list(POSITION_PHRASE.values()) + list(OPPOSITE_RELATION) + list(CAPTION_PROMPTS) + [
        "a and , .?", "is are there in this image only what color how many where the",
        "yes no user assistant :",
    ]:
        words.update(split_words(text))
    return sorted(words)


def split_words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks, the way the scene tokenizer splits text."""
    return re.findall(r"\w+|[^\w\s]", text.lower())
