"""Procedural scenes with exactly known content and built-in language priors.

A scene is a handful of simple drawn objects (apple, cup, car, tree, ...) on a textured
background. Every object kind has a colour, a count (1-3), a size (small/large) and one of five
positions (left, right, top, bottom, center). The training distribution carries two *language
priors* that a model can learn and then hallucinate from:

* **co-occurrence**: object kinds come in fixed partner pairs (cup with plate, car with tree, ...),
  and in training scenes a kind's partner is present most of the time (``PRIOR_P``);
* **typical colour**: every kind has a typical colour (apple red, banana yellow, ...), taken most of
  the time (``PRIOR_P``).

Splits:

* ``train`` / ``test``: the prior distribution above (``test`` is the same distribution with
  different scenes);
* ``test-consistent``: every object has its typical colour and every partner is present;
* ``test-breaking``: every object has an atypical colour and no partner is present, so whatever
  the priors suggest (the partner, the typical colour) is a hallucination;
* ``uniform``: no priors (uniform colours, partner present half the time); used to pre-train the
  vision tower so that it learns shapes rather than colour shortcuts.

Everything is a pure function of ``(split, seed, index)``: scene ``i`` of a split is drawn from its
own ``random.Random`` seeded with the string ``"{split}:{seed}:{i}"``, so scenes are reproducible
one by one and different splits/seeds give disjoint random streams.

Modules, one concept each: :mod:`~lvlm_skip.scenes.catalogue` (kinds, colours, priors),
:mod:`~lvlm_skip.scenes.scene` (the data model and captions), :mod:`~lvlm_skip.scenes.drawing`,
:mod:`~lvlm_skip.scenes.sampling` (scenes per split), :mod:`~lvlm_skip.scenes.questions`,
:mod:`~lvlm_skip.scenes.vocabulary`, :mod:`~lvlm_skip.scenes.export` (the AMBER / COCO-format
benchmark folder that ``lvlm-skip scenes`` writes) and :mod:`~lvlm_skip.scenes.pope` (its POPE
question files).
"""

from .catalogue import COLORS, IMAGE_SIZE, KINDS, OBJECTS, POSITIONS, PRIOR_P, SPLITS
from .pope import POPE_STRATEGIES, pope_question, pope_questions
from .questions import Question, relation_of, vqa_questions, yes_no_questions
from .sampling import generate, make_scene
from .scene import Scene, SceneObject
from .vocabulary import CAPTION_PROMPTS, split_words, vocabulary

__all__ = [
    "CAPTION_PROMPTS", "COLORS", "IMAGE_SIZE", "KINDS", "OBJECTS", "POPE_STRATEGIES", "POSITIONS", "PRIOR_P", "SPLITS",
    "Question", "pope_question", "pope_questions",
    "Scene", "SceneObject", "generate", "make_scene", "relation_of", "split_words", "vocabulary",
    "vqa_questions", "yes_no_questions",
]
