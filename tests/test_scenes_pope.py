"""The scene benchmark's POPE question files: counts, balance, how each split draws its absent kinds,
determinism, and the format of POPE's released files."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from lvlm_skip.cli import main
from lvlm_skip.data.pope import find_split_files, read_pope_questions
from lvlm_skip.scenes import KINDS, OBJECTS, generate
from lvlm_skip.scenes.pope import POPE_STRATEGIES, pope_question, pope_questions, write_pope_files

#: POPE's released question files: these keys in this order, and this text.
POPE_KEYS = ["question_id", "image", "text", "label"]
POPE_TEXT = re.compile(r"^Is there (a|an) (\w+) in the image\?$")


@pytest.fixture(scope="module")
def scenes():
    return generate("test", 7, 20)


def _kind(line: dict) -> str:
    return POPE_TEXT.match(line["text"]).group(2)


def _by_image(lines: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for line in lines:
        grouped.setdefault(line["image"], []).append(line)
    return grouped


def test_question_text_is_popes():
    assert pope_question("cup") == "Is there a cup in the image?"
    assert pope_question("apple") == "Is there an apple in the image?"
    assert pope_question("umbrella") == "Is there an umbrella in the image?"


@pytest.mark.parametrize("strategy", POPE_STRATEGIES)
def test_every_present_kind_yes_and_as_many_absent_no(scenes, strategy):
    lines = pope_questions(scenes, 7, strategy)
    assert [line["question_id"] for line in lines] == list(range(1, len(lines) + 1))
    assert all(list(line) == POPE_KEYS and POPE_TEXT.match(line["text"]) for line in lines)
    grouped = _by_image(lines)
    assert list(grouped) == [f"SCENE_{i}.png" for i in range(1, 21)]
    for scene, (image, questions) in zip(scenes, grouped.items()):
        assert [q["label"] for q in questions] == ["yes", "no"] * len(scene.kinds)  # POPE's order
        assert [_kind(q) for q in questions if q["label"] == "yes"] == scene.kinds
        absent = [_kind(q) for q in questions if q["label"] == "no"]
        assert len(set(absent)) == len(absent) == len(scene.kinds) and not set(absent) & set(scene.kinds)
    # 20 test scenes (seed 7): 3 with 1 kind, 8 with 2, 2 with 3, 7 with 4 -> 53 kinds, 106 questions per split
    assert Counter(len(s.kinds) for s in scenes) == {1: 3, 2: 8, 3: 2, 4: 7}
    assert Counter(line["label"] for line in lines) == {"yes": 53, "no": 53}


def test_popular_takes_the_most_frequent_absent_kinds(scenes):
    images = Counter(kind for scene in scenes for kind in set(scene.kinds))
    for scene, questions in zip(scenes, _by_image(pope_questions(scenes, 7, "popular")).values()):
        chosen = [_kind(q) for q in questions if q["label"] == "no"]
        rest = [k for k in KINDS if k not in scene.kinds and k not in chosen]
        assert min(images[k] for k in chosen) >= max(images[k] for k in rest)


def test_adversarial_asks_about_the_absent_prior_partners_first(scenes):
    together = Counter((a, b) for s in scenes for a in s.kinds for b in s.kinds if a != b)
    lines = pope_questions(scenes, 7, "adversarial")
    partners_asked = 0
    for scene, questions in zip(scenes, _by_image(lines).values()):
        chosen = [_kind(q) for q in questions if q["label"] == "no"]
        partners = scene.prior_partners_absent()
        assert chosen[: len(partners)] == partners
        partners_asked += len(partners)
        # the rest: most co-occurrences with the scene's kinds in the exported set
        rest = chosen[len(partners):]
        score = {k: sum(together[p, k] for p in scene.kinds) for k in KINDS}
        others = [k for k in KINDS if k not in scene.kinds and k not in chosen]
        assert all(score[k] >= score[o] for k in rest for o in others)
    assert partners_asked == 5  # on the priors' own split most partners are present


def test_adversarial_on_prior_breaking_scenes_is_exactly_the_partners():
    breaking = generate("test-breaking", 3, 20)
    for scene, questions in zip(breaking, _by_image(pope_questions(breaking, 3, "adversarial")).values()):
        chosen = [_kind(q) for q in questions if q["label"] == "no"]
        assert chosen == [OBJECTS[k][2] for k in scene.kinds]


def test_random_is_deterministic_per_scene_and_seeded(scenes):
    lines = pope_questions(scenes, 7, "random")
    assert lines == pope_questions(generate("test", 7, 20), 7, "random")
    assert pope_questions(scenes[:5], 7, "random") == lines[: sum(2 * len(s.kinds) for s in scenes[:5])]
    assert lines != pope_questions(scenes, 8, "random")
    absent = Counter(_kind(line) for line in lines if line["label"] == "no")
    assert len(absent) >= 15  # spread over the catalogue, not the popular few


def test_export_writes_the_files_and_the_reader_takes_them(tmp_path):
    out = tmp_path / "scenes"
    assert main(["scenes", "--out", str(out), "--n-images", "6", "--seed", "7", "--split", "test"]) == 0
    files = find_split_files(out / "pope")
    assert files == {s: out / "pope" / f"scenes_pope_{s}.json" for s in POPE_STRATEGIES}
    for strategy, path in files.items():
        raw = path.read_text().splitlines()
        assert [list(json.loads(line)) for line in raw] == [POPE_KEYS] * len(raw)
        questions = read_pope_questions(path)
        assert all((out / "images" / q.image).is_file() for q in questions)
        assert [q.__dict__ for q in questions] == [
            {**line, "line": i} for i, line in enumerate(pope_questions(generate("test", 7, 6), 7, strategy), 1)]
    again = tmp_path / "again"
    write_pope_files(again, generate("test", 7, 6), 7)
    assert all((again / p.name).read_bytes() == p.read_bytes() for p in files.values())
    bare = tmp_path / "bare"
    assert main(["scenes", "--out", str(bare), "--n-images", "2", "--no-pope"]) == 0
    assert not (bare / "pope").exists() and (bare / "annotations.json").is_file()


def test_export_pope_runs_on_the_runner(tmp_path: Path, use_generator):
    """The exported files are a POPE folder for ``lvlm-skip pope``: the image names resolve under images/."""
    from lvlm_skip.evaluation.generation import Generation

    out = tmp_path / "scenes"
    main(["scenes", "--out", str(out), "--n-images", "3", "--seed", "1"])
    use_generator(lambda image, prompt, label: Generation("No", 1, 0.01, 0.0))
    assert main(["pope", "--model", "tiny", "--pope-root", str(out / "pope"), "--image-dir", str(out / "images"),
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    row = json.loads((tmp_path / "run" / "pope_all.json").read_text())["rows"][0]
    assert row["errors"] == 0 and row["random_Accuracy"] == 50.0 and row["random_yes_ratio"] == 0.0
    assert row["random_F1"] == 0.0  # no "yes" answer: 0 where the official script divides by zero
