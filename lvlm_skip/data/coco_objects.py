"""The COCO object words: the synonyms table of CHAIR (Rohrbach et al., EMNLP 2018), as shipped.

The table (``files/chair_synonyms.txt``) is ``data/synonyms.txt`` of
https://github.com/LisaAnne/Hallucination at commit 6e4d33c4bedf6dfcd24c61bf527f40714717be47, byte
for byte (BSD 2-Clause; provenance and licence in ``files/README.md`` and ``files/LICENSE``). Each
line is one of the 80 MSCOCO categories: its first entry is the category, every entry a word or
phrase that names it. How CHAIR counts mentions of these words is
:mod:`lvlm_skip.benchmarks.caption.chair`.
"""

from __future__ import annotations

import functools
from importlib import resources

SOURCE_REPOSITORY = "https://github.com/LisaAnne/Hallucination"
"""Where the original CHAIR code and synonyms table live."""
SOURCE_COMMIT = "6e4d33c4bedf6dfcd24c61bf527f40714717be47"
"""The commit whose ``data/synonyms.txt`` ships as ``files/chair_synonyms.txt``."""


@functools.lru_cache(maxsize=None)
def synonym_lines() -> tuple[tuple[str, ...], ...]:
    """The shipped table's lines, split as the original does (``line.strip().split(", ")``): category first."""
    text = resources.files(__package__).joinpath("files", "chair_synonyms.txt").read_text("utf-8")
    return tuple(tuple(line.strip().split(", ")) for line in text.splitlines())


def object_words() -> frozenset[str]:
    """Every single-word, alphabetic entry of the table (the content words of a COCO caption)."""
    return frozenset(entry for line in synonym_lines() for entry in line if " " not in entry and entry.isalpha())
