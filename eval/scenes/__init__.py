"""Procedurally generated scenes: a hallucination benchmark with exactly known ground truth.

See :mod:`eval.scenes.generator` for the scene model and its language priors and
:mod:`eval.scenes.export` for the AMBER/COCO-format export
(``python -m eval.scenes --out DIR --n-images N --seed S --split test-breaking``).
"""

from eval.scenes.generator import (
    COLORS,
    IMAGE_SIZE,
    KINDS,
    OBJECTS,
    POSITIONS,
    PRIOR_P,
    SPLITS,
    Question,
    Scene,
    SceneObject,
    generate,
    make_scene,
    split_words,
    vocabulary,
    vqa_questions,
    yes_no_questions,
)

__all__ = [
    "COLORS", "IMAGE_SIZE", "KINDS", "OBJECTS", "POSITIONS", "PRIOR_P", "SPLITS", "Question",
    "Scene", "SceneObject", "generate", "make_scene", "split_words", "vocabulary",
    "vqa_questions", "yes_no_questions",
]
