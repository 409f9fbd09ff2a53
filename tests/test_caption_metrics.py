"""Hand-checked tests of the caption metrics: CHAIR (interim word list), closeness, COCO metrics, caption data."""

from __future__ import annotations

import json
import logging
import math

import pytest

from lvlm_skip.benchmarks.caption import closeness, coco_metrics
from lvlm_skip.benchmarks.caption.task import chair, load_image_objects
from lvlm_skip.data.coco_captions import CaptionDataError, load_captions

# ---------------------------------------------------------------- COCO-format fixture
IMAGE_OBJECTS = {
    1: {"dog", "couch"},
    2: {"person", "motorcycle"},
    3: {"cat"},
    4: {"person", "dining table"},
}
CANDIDATES = {
    # dog (plural) + sofa->couch ok; cat hallucinated            -> 3 mentions, 1 halluc.
    1: "Two dogs are sleeping on a sofa next to a cat.",
    # man->person, motorbike->motorcycle ok; cars->car halluc.   -> 3 mentions, 1 halluc.
    2: "A man rides a motorbike past parked cars.",
    # kitten->cat ok; grass is no object                          -> 1 mention, 0 halluc.
    3: "A kitten sits in the grass.",
    # women->person, table->dining table ok; "hot dogs" -> hot dog (not dog), halluc.
    4: "Two women eat hot dogs at a table.",
}


def _instances_json():
    cats = [{"id": k, "name": n} for k, n in enumerate(
        ["person", "motorcycle", "dog", "cat", "couch", "dining table"], start=1)]
    cid = {c["name"]: c["id"] for c in cats}
    anns = [{"id": n, "image_id": img, "category_id": cid[name]}
            for n, (img, name) in enumerate(
                [(1, "dog"), (1, "dog"), (1, "couch"), (2, "person"), (2, "motorcycle"),
                 (3, "cat"), (4, "person"), (4, "dining table")])]
    images = [{"id": i, "file_name": f"{i}.png"} for i in (1, 2, 3, 4, 5)]
    return {"images": images, "annotations": anns, "categories": cats}


def test_chair_from_instances_file(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(_instances_json()))
    objs = load_image_objects(path)
    assert objs[1] == {"dog", "couch"} and objs[5] == set()
    assert chair.image_objects_from_instances(path) == objs
    out = chair.chair_scores(CANDIDATES, objs)
    assert out["CHAIR_S"] == pytest.approx(0.75) and out["CHAIR_I"] == pytest.approx(0.3)


def test_load_captions_errors(tmp_path):
    with pytest.raises(CaptionDataError, match="not found"):
        load_captions(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CaptionDataError, match="corrupt JSON") as info:
        load_captions(bad)
    assert "\n" not in str(info.value)
    orphan = tmp_path / "orphan.json"
    orphan.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                                  "annotations": [{"image_id": 2, "caption": "x"}]}))
    with pytest.raises(CaptionDataError, match="unknown image id"):
        load_captions(orphan)


def test_closeness_hand_computed():
    variant = {1: "a dog on the red couch", 2: "A cat.", 3: "", 4: "b a", 99: "extra"}
    none = {1: "a dog on a red couch", 2: "a cat", 3: "a bird", 4: "a b"}
    # pair 1: lev=1 of 6 words -> 5/6; bag overlap 5 -> F1 5/6; LCS 5 -> 5/6
    # pair 2: identical after tokenization -> 1 everywhere
    # pair 3: one side empty -> 0 everywhere
    # pair 4: lev("b a","a b")=2 -> 0; bag overlap 2 -> 1; LCS 1 -> 1/2
    out = closeness.closeness_to_reference_variant(variant, none)
    assert out["n_pairs"] == 4 and out["n_unpaired"] == 1
    assert out["identical"] == pytest.approx(1 / 4)
    assert out["edit_similarity"] == pytest.approx((5 / 6 + 1 + 0 + 0) / 4)
    assert out["unigram_f1"] == pytest.approx((5 / 6 + 1 + 0 + 1) / 4)
    assert out["rouge_l_f1"] == pytest.approx((5 / 6 + 1 + 0 + 0.5) / 4)
    assert closeness.closeness_to_reference_variant({}, none)["edit_similarity"] is None


@pytest.mark.skipif(not coco_metrics.java_available(), reason="java not installed")
def test_bleu_identical_and_hand_computed():
    refs = {1: ["A dog sleeps on a couch."], 2: ["the cat sat on mat"]}
    # identical candidate -> BLEU-1 = 1
    out = coco_metrics.coco_caption_scores({1: refs[1]}, {1: "a dog sleeps on a couch"}, metrics=["bleu"])
    assert out["tokenizer"] == "ptb"
    assert out["scores"]["Bleu_1"] == pytest.approx(1.0, abs=1e-6)
    # "the the cat": clipped unigram precision 2/3, BP = exp(1 - 5/3)
    out = coco_metrics.coco_caption_scores({2: refs[2]}, {2: "the the cat"}, metrics=["bleu"])
    assert out["scores"]["Bleu_1"] == pytest.approx(2 / 3 * math.exp(1 - 5 / 3), abs=1e-6)


def test_spice_skipped_with_message(monkeypatch, caplog):
    monkeypatch.setattr(coco_metrics, "_SPICE_CORENLP_JARS", ("no-such-corenlp.jar",))
    ok, reason = coco_metrics.spice_status()
    assert not ok and reason
    with caplog.at_level(logging.INFO, logger="lvlm_skip.benchmarks.caption.coco_metrics"):
        out = coco_metrics.coco_caption_scores({1: ["a cat"]}, {1: "a cat"}, metrics=["spice"])
    assert "SPICE" in out["skipped"] and "SPICE" not in out["scores"]
    assert any("skipping SPICE" in r.getMessage() for r in caplog.records)


def test_no_java_skips_meteor(monkeypatch):
    monkeypatch.setattr(coco_metrics, "java_available", lambda: False)
    out = coco_metrics.coco_caption_scores({1: ["A red bus."]}, {1: "a red bus"},
                                 metrics=["bleu", "meteor", "rouge"])
    assert out["tokenizer"] == "simple"
    assert "METEOR" in out["skipped"] and "java" in out["skipped"]["METEOR"]
    assert out["scores"]["ROUGE_L"] == pytest.approx(1.0)
    assert out["scores"]["Bleu_1"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.skipif(not coco_metrics.java_available(), reason="java not installed")
def test_multi_system_matches_single_calls():
    refs = {1: ["a dog on a couch", "a brown dog"], 2: ["a man on a motorbike"], 3: ["x"]}
    systems = {"a": {1: "a dog on a sofa", 2: "a man riding a motorbike"},
               "b": {1: "a brown dog", 2: "", 7: "no reference"}}
    multi = coco_metrics.coco_caption_scores_multi(refs, systems, metrics=["bleu", "rouge", "cider"])
    for name, cands in systems.items():
        single = coco_metrics.coco_caption_scores(refs, cands, metrics=["bleu", "rouge", "cider"])
        assert multi[name]["scores"] == pytest.approx(single["scores"])
    assert multi["b"]["n_missing_reference"] == 1 and multi["b"]["n_scored"] == 2
