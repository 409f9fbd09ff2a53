"""Questions about a scene with known answers: yes/no (AMBER types) and single-word (VQA)."""

from __future__ import annotations

import dataclasses
import random

from .catalogue import COLORS, KINDS, NUMBER_WORDS, OBJECTS, POSITION_CELL
from .scene import Scene, SceneObject


@dataclasses.dataclass(frozen=True)
class Question:
    """A question about a scene.

    Attributes:
        type: AMBER type name (``discriminative-hallucination``, ``discriminative-attribute-state``,
            ``discriminative-attribute-number``, ``discriminative-relation``) for yes/no questions,
            or ``vqa-color`` / ``vqa-number`` / ``vqa-position`` for single-word questions.
        query: The question text.
        answer: ``"yes"``/``"no"`` or the single-word answer.
        subject: The object kind asked about.
    """

    type: str
    query: str
    answer: str
    subject: str


def _is_are(o: SceneObject) -> tuple[str, str]:
    return ("is", o.kind) if o.count == 1 else ("are", OBJECTS[o.kind][0])


def relation_of(a: SceneObject, b: SceneObject) -> str | None:
    """Spatial relation of ``a`` to ``b`` when they share a row or column, else ``None``."""
    (ca, ra), (cb, rb) = POSITION_CELL[a.position], POSITION_CELL[b.position]
    if ra == rb and ca != cb:
        return "to the left of" if ca < cb else "to the right of"
    if ca == cb and ra != rb:
        return "above" if ra < rb else "below"
    return None


OPPOSITE_RELATION = {"to the left of": "to the right of", "to the right of": "to the left of",
             "above": "below", "below": "above"}


def yes_no_questions(scene: Scene, rng: random.Random) -> list[Question]:
    """A balanced set of yes/no questions (existence, colour, number, relation) about a scene."""
    qs: list[Question] = []
    present = scene.kinds
    # existence: every present object (yes) and as many absent ones (no), prior partners first
    absent = scene.prior_partners_absent()
    others = [k for k in KINDS if k not in present and k not in absent]
    rng.shuffle(others)
    absent = (absent + others)[: len(present)]
    for k in present:
        qs.append(Question("discriminative-hallucination", f"Is there a {k} in this image?",
                           "yes", k))
    for k in absent:
        qs.append(Question("discriminative-hallucination", f"Is there a {k} in this image?",
                           "no", k))
    for o in scene.objects:
        verb, noun = _is_are(o)
        # colour: the true one, and a wrong one (the typical colour when it is wrong)
        typical = OBJECTS[o.kind][1]
        wrong = typical if typical != o.color else rng.choice([c for c in COLORS if c != o.color])
        col = [(o.color, "yes"), (wrong, "no")]
        rng.shuffle(col)
        for c, ans in col[:1] if rng.random() < 0.5 else col:
            qs.append(Question("discriminative-attribute-state",
                               f"{verb.capitalize()} the {noun} {c} in this image?", ans, o.kind))
        # number
        n = rng.choice((1, 2, 3))
        ans = "yes" if n == o.count else "no"
        if n == 1:
            q = f"Is there only one {o.kind} in this image?"
        else:
            q = f"Are there {NUMBER_WORDS[n]} {OBJECTS[o.kind][0]} in this image?"
        qs.append(Question("discriminative-attribute-number", q, ans, o.kind))
    # relation
    objs = list(scene.objects)
    for i, a in enumerate(objs):
        for b in objs[i + 1:]:
            rel = relation_of(a, b)
            if rel is None:
                continue
            x, y = (a, b) if rng.random() < 0.5 else (b, a)
            rel = relation_of(x, y)
            ask, ans = (rel, "yes") if rng.random() < 0.5 else (OPPOSITE_RELATION[rel], "no")
            verb, noun = _is_are(x)
            _, noun_y = _is_are(y)
            query = f"{verb.capitalize()} the {noun} {ask} the {noun_y}?"
            qs.append(Question("discriminative-relation", query, ans, x.kind))
    return qs


def vqa_questions(scene: Scene) -> list[Question]:
    """Single-word questions (colour, number, position) for every object of a scene."""
    qs = []
    for o in scene.objects:
        verb, noun = _is_are(o)
        qs.append(Question("vqa-color", f"What color {verb} the {noun}?", o.color, o.kind))
        qs.append(Question("vqa-number", f"How many {OBJECTS[o.kind][0]} are there?",
                           NUMBER_WORDS[o.count], o.kind))
        qs.append(Question("vqa-position", f"Where {verb} the {noun}?", o.position, o.kind))
    return qs
