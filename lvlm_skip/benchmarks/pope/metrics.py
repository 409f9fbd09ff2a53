"""POPE's metrics, counted exactly like the official ``evaluate.py`` (Li et al., EMNLP 2023).

The official script (``AoiDragon/POPE``, ``evaluate.py``; LLaVA-1.5's ``llava/eval/eval_pope.py`` is
the same code) does, per answer (:func:`pope_answer`):

1. keep the text before the first ``"."`` (when there is one);
2. remove every ``","``;
3. split on single spaces (``text.split(" ")``: a newline or tab does not separate words);
4. the answer is ``"no"`` if ``"No"``, ``"not"`` or ``"no"`` is one of the words, else ``"yes"``.

So the rule is case-sensitive: ``"NO"``, ``"Not"`` and ``"no!"`` are *yes*, and so is an empty answer
or ``"No\\nthere is none"`` (its first word is ``"No\\nthere"``). ``"yes"`` is the positive class::

    precision = TP / (TP + FP)        recall   = TP / (TP + FN)
    f1        = 2 * precision * recall / (precision + recall)
    accuracy  = (TP + TN) / (TP + TN + FP + FN)
    yes_ratio = (TP + FP) / len(answers)

:func:`score_pope` returns these as unrounded fractions, computed with the same float operations
in the same order as the script, so every value is bit-identical to what it prints.

Where the script fails, and what this module does instead:

* **0 / 0.** The script raises ``ZeroDivisionError`` when no answer is "yes" (precision), when
  no label is "yes" (recall), or when TP = 0 (F1, since precision + recall = 0). Here each of those
  is 0.0 (scikit-learn's ``zero_division=0``): a model that answers "no" to everything scores
  precision, recall and F1 of 0, which is also the limit of F1 = 2TP / (2TP + FP + FN) at TP = 0.
* **Lengths.** The script ``zip``s answers with labels (a shorter answer list silently drops the
  last labels) and divides the yes-ratio by the number of answers; here different lengths and an
  empty list raise :class:`ValueError`.
* **Other readings.** VCD's and DeCo's ``eval_pope.py`` are not this code: they look for the
  substrings ``"yes"`` / ``"no"`` in the lower-cased answer, by label. ``--protocol authors`` uses
  their readings for their own rows (:mod:`~lvlm_skip.benchmarks.pope.protocols`).
* **Labels.** The script counts every label other than ``"no"`` as yes (so ``"No"`` would be
  positive); here a label must be exactly ``"yes"`` or ``"no"``, as in every POPE file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...data.pope import LABELS

#: The keys of :func:`score_pope`'s result, in the order the official script prints them.
METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def pope_answer(text: str) -> str:
    """``"yes"`` or ``"no"``: a free-form answer read exactly like the official ``evaluate.py``.

    Args:
        text: The model's answer as generated.

    Returns:
        ``"no"`` when the first sentence (before the first ``"."``), with commas removed and split
        on single spaces, has the word ``"No"``, ``"not"`` or ``"no"``; ``"yes"`` otherwise.
    """
    # 1. only the first sentence
    if text.find(".") != -1:
        text = text.split(".")[0]
    # 2. no commas; 3. words separated by single spaces
    words = text.replace(",", "").split(" ")
    # 4. a negation word makes it "no", anything else is "yes"
    return "no" if "No" in words or "not" in words or "no" in words else "yes"


@dataclass(frozen=True)
class PopeCounts:
    """The confusion counts of yes/no answers ("yes" positive) and the metrics derived from them.

    Attributes:
        tp: Answered "yes", label "yes".
        fp: Answered "yes", label "no".
        tn: Answered "no", label "no".
        fn: Answered "no", label "yes".
    """

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 0.0 when nothing was answered "yes" (the official script raises)."""
        return float(self.tp) / float(self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 0.0 when no label is "yes" (the official script raises)."""
        return float(self.tp) / float(self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        """2 P R / (P + R), as the script computes it; 0.0 when P + R = 0, i.e. TP = 0 (the script raises)."""
        precision, recall = self.precision, self.recall
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / (self.tp + self.tn + self.fp + self.fn)

    @property
    def yes_ratio(self) -> float:
        """The share of "yes" answers."""
        return (self.tp + self.fp) / self.n

    def metrics(self) -> dict[str, float]:
        """:data:`METRICS` as unrounded fractions."""
        return {name: getattr(self, name) for name in METRICS}


def count_pope(answers: Sequence[str], labels: Sequence[str]) -> PopeCounts:
    """The confusion counts of ``answers`` (read by :func:`pope_answer`) against ``labels``.

    Args:
        answers: The model's answers, free-form text.
        labels: ``"yes"`` / ``"no"``, one per answer, in the same order.

    Raises:
        ValueError: different lengths, no answers, or a label other than ``"yes"`` / ``"no"``.
        TypeError: an answer that is not a string.
    """
    if len(answers) != len(labels):
        raise ValueError(f"{len(answers)} answers for {len(labels)} labels: POPE scores one answer per question")
    if not answers:
        raise ValueError("no answers to score")
    bad = next((label for label in labels if label not in LABELS), None)
    if bad is not None:
        raise ValueError(f"a POPE label is 'yes' or 'no', got {bad!r}")
    tp = fp = tn = fn = 0
    for answer, label in zip(answers, labels):
        if not isinstance(answer, str):
            raise TypeError(f"an answer must be a string, got {type(answer).__name__}")
        said_yes, is_yes = pope_answer(answer) == "yes", label == "yes"
        tp += said_yes and is_yes
        fp += said_yes and not is_yes
        tn += not said_yes and not is_yes
        fn += not said_yes and is_yes
    return PopeCounts(tp=tp, fp=fp, tn=tn, fn=fn)


def score_pope(answers: list[str], labels: list[str]) -> dict[str, float]:
    """POPE's metrics of ``answers`` against ``labels``, exactly like the official ``evaluate.py``.

    Args:
        answers: The model's answers, free-form text (see :func:`pope_answer`).
        labels: ``"yes"`` / ``"no"``, one per answer, in the same order.

    Returns:
        ``{"accuracy", "precision", "recall", "f1", "yes_ratio"}`` as unrounded fractions in [0, 1],
        equal to the script's printed values; where the script divides by zero, 0.0 (module docstring).

    Raises:
        ValueError: different lengths, no answers, or a label other than ``"yes"`` / ``"no"``.
    """
    return count_pope(answers, labels).metrics()
