"""The interim CHAIR module's own behaviour (its word list and options).

Delete this file together with ``lvlm_skip/evaluation/_chair_interim.py`` when
``lvlm_skip/evaluation/chair.py`` (the original Rohrbach et al. lists) lands; the API-level CHAIR
tests in ``test_caption_metrics.py`` and ``test_caption_runner.py`` stay.
"""

from __future__ import annotations

import pytest

from lvlm_skip.evaluation import _chair_interim as chair
from test_caption_metrics import CANDIDATES, IMAGE_OBJECTS


def test_singularize_and_caption_objects():
    assert [chair.singularize(w) for w in ["dogs", "puppies", "benches", "glasses", "bus",
                                        "men", "knives", "skis", "grass"]] == [
        "dog", "puppy", "bench", "glass", "bus", "man", "knife", "ski", "grass"]
    found = chair.caption_objects("A baby elephant, a motor bike and a toilet seat.")
    # "baby elephant" must not fire person; toilet seat is not a chair
    assert found == [("elephant", "elephant"), ("motor bike", "motorcycle"),
                     ("toilet", "toilet")]


def test_chair_hand_computed():
    out = chair.chair_scores(CANDIDATES, IMAGE_OBJECTS)
    # 3 of 4 captions hallucinate; 3 hallucinated mentions out of 3+3+1+3 = 10
    assert out["CHAIR_S"] == pytest.approx(3 / 4)
    assert out["CHAIR_I"] == pytest.approx(3 / 10)
    assert out["n_mentions"] == 10 and out["n_hallucinated_mentions"] == 3
    assert out["per_caption"][1]["hallucinated"] == [["cat", "cat"]]
    assert out["per_caption"][2]["hallucinated"] == [["car", "car"]]
    assert out["per_caption"][4]["hallucinated"] == [["hot dog", "hot dog"]]
    assert out["per_caption"][3]["hallucinated"] == []


def test_chair_custom_synonyms_and_missing_objects():
    syn = {"puppy": "canine", "dog": "canine", "cat": "feline"}
    out = chair.chair_scores({1: "Puppies and a cat.", 9: "a dog"}, {1: {"canine"}},
                          synonyms=syn, phrase_rules={})
    assert out["n_missing_objects"] == 1
    assert out["CHAIR_S"] == 1.0 and out["CHAIR_I"] == pytest.approx(1 / 2)
