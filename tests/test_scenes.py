"""Tests for the procedural scene benchmark (lvlm_skip.scenes, lvlm-skip scenes)."""

from __future__ import annotations

import io
import json
import random
from collections import Counter

import pytest

from lvlm_skip.cli import main
from lvlm_skip.scenes import KINDS, OBJECTS, POSITIONS, PRIOR_P, generate, make_scene, relation_of, split_words, vocabulary, yes_no_questions

AMBER_YES_NO = {"discriminative-hallucination", "discriminative-attribute-state",
                "discriminative-attribute-number", "discriminative-relation"}


def _png(scene) -> bytes:
    buf = io.BytesIO()
    scene.image.save(buf, format="PNG")
    return buf.getvalue()


def test_at_least_20_kinds_with_symmetric_partners():
    assert len(KINDS) >= 20
    for kind, (_, _, partner) in OBJECTS.items():
        assert OBJECTS[partner][2] == kind


def test_deterministic_from_seed():
    a, b = generate("train", 7, 6), generate("train", 7, 6)
    assert [_png(x) for x in a] == [_png(x) for x in b]
    assert [x.caption() for x in a] == [x.caption() for x in b]
    c = generate("train", 8, 6)
    assert [x.caption() for x in a] != [x.caption() for x in c]
    # scene i does not depend on how many scenes were generated before it
    assert _png(make_scene("train", 7, 4)) == _png(a[4])


def test_scene_contents_are_valid():
    for sc in generate("test", 0, 50):
        assert sc.image.size == (112, 112) and sc.image.mode == "RGB"
        assert 1 <= len(sc.objects) <= 4
        assert len({o.position for o in sc.objects}) == len(sc.objects)
        assert len(set(sc.kinds)) == len(sc.kinds)
        for o in sc.objects:
            assert 1 <= o.count <= 3 and len(o.boxes) == o.count
            assert o.size in ("small", "large") and o.position in POSITIONS
        assert set(split_words(sc.caption())) <= set(vocabulary())


def test_training_priors_frequencies():
    scenes = generate("train", 0, 1500)
    objs = [o for sc in scenes for o in sc.objects]
    typical = sum(o.color == OBJECTS[o.kind][1] for o in objs) / len(objs)
    with_partner = sum(OBJECTS[o.kind][2] in sc.kinds for sc in scenes for o in sc.objects)
    # P(partner present | object present): a full pair contributes 2 objects with partner
    p = PRIOR_P
    expected_partner = 2 * p / (2 * p + (1 - p))
    assert abs(typical - (p + (1 - p) * 0)) < 0.03
    assert abs(with_partner / len(objs) - expected_partner) < 0.03
    assert 0.8 <= typical <= 0.92


def test_prior_consistent_and_breaking_splits():
    for sc in generate("test-consistent", 1, 100):
        assert all(o.color == OBJECTS[o.kind][1] for o in sc.objects)
        assert all(OBJECTS[k][2] in sc.kinds for k in sc.kinds)
    for sc in generate("test-breaking", 1, 100):
        assert all(o.color != OBJECTS[o.kind][1] for o in sc.objects)
        assert not any(OBJECTS[k][2] in sc.kinds for k in sc.kinds)
        assert sc.prior_partners_absent() == [OBJECTS[k][2] for k in sc.kinds]


def test_uniform_split_has_no_priors():
    objs = [o for sc in generate("uniform", 0, 400) for o in sc.objects]
    typical = sum(o.color == OBJECTS[o.kind][1] for o in objs) / len(objs)
    assert typical < 0.25


def test_questions_answers_match_scene():
    rng = random.Random(0)
    counts = Counter()
    for sc in generate("test", 2, 60):
        for q in yes_no_questions(sc, rng):
            counts[q.answer] += 1
            o = sc.get(q.subject)
            if q.type == "discriminative-hallucination":
                assert (q.answer == "yes") == (o is not None)
            elif q.type == "discriminative-attribute-state":
                said = [w for w in split_words(q.query) if w in {"red", "yellow", "green", "blue",
                        "orange", "purple", "pink", "brown"}]
                assert (q.answer == "yes") == (said == [o.color])
            elif q.type == "discriminative-relation":
                assert o is not None
                others = [x for x in sc.objects if x.kind != o.kind]
                assert any(relation_of(o, x) for x in others)
    assert counts["yes"] > 0.3 * sum(counts.values()) and counts["no"] > 0.3 * sum(counts.values())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    assert main(["scenes", "--out", str(out), "--n-images", "12", "--seed", "5", "--split", "test-breaking"]) == 0
    return out


def test_export_amber_format(exported):
    ann = json.loads((exported / "annotations.json").read_text())
    gen = [a for a in ann if a["type"] == "generative"]
    assert [a["id"] for a in gen] == list(range(1, 13))
    assert [a["id"] for a in ann] == list(range(1, len(ann) + 1))
    assert {a["type"] for a in ann if a["id"] > 12} <= AMBER_YES_NO
    assert all(a["truth"] in ("yes", "no") for a in ann if a["id"] > 12)
    relation = json.loads((exported / "relation.json").read_text())
    assert set(relation) == set(KINDS)
    caps = json.loads((exported / "captions.json").read_text())
    by_image = {}
    for c in caps["annotations"]:
        by_image.setdefault(c["image_id"], c["caption"])
    for a in gen:
        words = set(split_words(by_image[a["id"]]))
        for obj in a["truth"]:
            assert obj in words or OBJECTS[obj][0] in words
        assert not set(a["hallu"]) & set(a["truth"])
        # prior-breaking: every present object's partner is a listed hallucination candidate
        assert {OBJECTS[t][2] for t in a["truth"]} <= set(a["hallu"])
    q_all = json.loads((exported / "query" / "query_all.json").read_text())
    assert [q["id"] for q in q_all] == [a["id"] for a in ann]
    assert all((exported / "images" / q["image"]).is_file() for q in q_all)
    sub = {}
    for stem in ("generative", "discriminative", "discriminative-existence",
                 "discriminative-attribute", "discriminative-relation"):
        sub[stem] = json.loads((exported / "query" / f"query_{stem}.json").read_text())
    assert len(sub["generative"]) + len(sub["discriminative"]) == len(q_all)
    assert (len(sub["discriminative-existence"]) + len(sub["discriminative-attribute"])
            + len(sub["discriminative-relation"])) == len(sub["discriminative"])
    assert (exported / "safe_words.txt").read_text().strip()


def test_export_loads_with_project_readers(exported):
    from lvlm_skip.data import amber as amber_data
    from lvlm_skip.benchmarks.caption.task import load_image_objects
    from lvlm_skip.data.coco_captions import load_captions

    data = amber_data.load_amber(exported)
    for task in ("a", "g", "d", "de", "da", "dr"):
        amber_data.check_queries(amber_data.load_queries(exported, task), data)
    ds = load_captions(exported / "captions.json")
    assert len(ds.images) == 12
    truth = {a["id"]: set(a["truth"]) for a in
             json.loads((exported / "annotations.json").read_text()) if a["type"] == "generative"}
    raw = json.loads((exported / "instances.json").read_text())
    names = {c["id"]: c["name"] for c in raw["categories"]}
    exported_objects = {im["id"]: set() for im in raw["images"]}
    for a in raw["annotations"]:
        exported_objects[a["image_id"]].add(names[a["category_id"]])
    assert exported_objects == truth
    # CHAIR reads the same file through its COCO synonyms table: the scene kinds it knows, under COCO's names
    inst = load_image_objects(exported / "instances.json")
    assert set(inst) == set(truth) and inst[4] == {"sports ball"} and inst[1] == set()


def test_export_coco_instances(exported):
    inst = json.loads((exported / "instances.json").read_text())
    assert [c["name"] for c in inst["categories"]] == list(KINDS)
    ids = {im["id"] for im in inst["images"]}
    assert ids == set(range(1, 13))
    for a in inst["annotations"]:
        assert a["image_id"] in ids and len(a["bbox"]) == 4 and a["iscrowd"] == 0
