"""End-to-end tests of ``python -m eval.caption`` with a fake generate_fn."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from eval import caption

TEXTS = {  # (variant, image id) -> caption; image 4 is corrupt and never reaches the model
    ("none", 1): "A dog sleeping on a couch.",
    ("none", 2): "A man riding a motorbike.",
    ("none", 3): "A cat on a bed.",
    ("skip1", 1): "A dog sleeping on a couch.",
    ("skip1", 2): "A man riding a red motorbike.",
    ("skip1", 3): "A cat and a dog on a bed.",
}


class FakeGenerate:
    """Deterministic generate_fn: skip1 is twice as fast per token as none."""

    def __init__(self):
        self.calls = []

    def __call__(self, image, prompt, variant):
        assert isinstance(image, Image.Image) and prompt
        image_id = image.getpixel((0, 0))[0]  # the fixture encodes the id in red
        self.calls.append((variant, image_id))
        text = TEXTS[(variant, image_id)]
        n = len(text.split())
        return text, n, n * (0.1 if variant == "none" else 0.05)


@pytest.fixture()
def fixture(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    for i in (1, 2, 3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(img_dir / f"{i}.png")
    (img_dir / "4.png").write_bytes(b"this is not a png")
    caps = {
        "images": [{"id": i, "file_name": f"{i}.png"} for i in (1, 2, 3, 4)],
        "annotations": [
            {"image_id": 1, "caption": "A dog sleeping on a couch."},
            {"image_id": 1, "caption": "A brown dog lies on a sofa."},
            {"image_id": 2, "caption": "A man riding a motorbike."},
            {"image_id": 3, "caption": "A cat lying on a bed."},
            {"image_id": 4, "caption": "Nothing to see."},
        ],
    }
    (tmp_path / "captions.json").write_text(json.dumps(caps))
    cats = [{"id": 1, "name": "dog"}, {"id": 2, "name": "couch"}, {"id": 3, "name": "person"},
            {"id": 4, "name": "motorcycle"}, {"id": 5, "name": "cat"}, {"id": 6, "name": "bed"}]
    anns = [{"image_id": i, "category_id": c} for i, c in
            [(1, 1), (1, 2), (2, 3), (2, 4), (3, 5), (3, 6)]]
    (tmp_path / "instances.json").write_text(json.dumps(
        {"images": caps["images"], "annotations": anns, "categories": cats}))
    return tmp_path


def _argv(root, *extra):
    return ["--captions", str(root / "captions.json"), "--image-dir", str(root / "images"),
            "--instances", str(root / "instances.json"), "--variants", "none,skip1",
            "--out", str(root / "out"), "--metrics", "bleu,rouge,cider", *extra]


def test_end_to_end_report_resume_and_errors(fixture, capsys):
    fake = FakeGenerate()
    assert caption.main(_argv(fixture), generate_fn=fake) == 0
    assert len(fake.calls) == 6  # 3 good images x 2 variants; the corrupt one is an error
    out = fixture / "out"
    records = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    errors = [r for r in records if "error" in r]
    assert {(r["variant"], r["id"]) for r in errors} == {("none", 4), ("skip1", 4)}
    assert all("4.png" in r["error"] for r in errors)

    report = json.loads((out / "caption_report.json").read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    assert set(rows) == {"none", "skip1"}
    none, skip1 = rows["none"], rows["skip1"]
    assert none["n"] == 3 and none["errors"] == 1
    # none's captions contain only ground-truth objects; skip1 adds a dog to image 3
    assert none["CHAIR_S"] == 0.0 and none["CHAIR_I"] == 0.0
    assert skip1["CHAIR_S"] == pytest.approx(1 / 3)
    assert skip1["CHAIR_I"] == pytest.approx(1 / 7)  # 7 mentions: dog couch man motorbike cat dog bed
    # closeness: pair 1 identical; pair 2 lev 1 of 6 words; pair 3 "a cat and a dog on a bed" vs
    # "a cat on a bed": lev 3 of 8 words
    assert skip1["close_identical"] == pytest.approx(1 / 3)
    assert skip1["close_edit_similarity"] == pytest.approx((1 + 5 / 6 + 5 / 8) / 3)
    assert none["close_identical"] is None
    assert none["speedup"] == pytest.approx(1.0) and skip1["speedup"] == pytest.approx(2.0)
    assert none["tok_per_s"] == pytest.approx(10.0)
    assert 0 < none["Bleu_1"] <= 1 and "CIDEr" in none and "ROUGE_L" in none
    details = json.loads((out / "caption_chair_details.json").read_text())
    assert details["skip1"]["3"]["hallucinated"] == [["dog", "dog"]]
    md = (out / "caption_report.md").read_text()
    assert "| skip1" in md and "CHAIR_S" in md
    printed = capsys.readouterr().out
    assert "skip1" in printed and "close_edit_similarity" in printed

    # resume: nothing new is generated, the report is rebuilt identically
    fake2 = FakeGenerate()
    assert caption.main(_argv(fixture), generate_fn=fake2) == 0
    assert fake2.calls == []
    assert json.loads((out / "caption_report.json").read_text())["rows"] == report["rows"]
    # score-only needs no image dir and no model
    assert caption.main(["--captions", str(fixture / "captions.json"), "--out", str(out),
                         "--variants", "none,skip1", "--metrics", "bleu", "--score-only"]) == 0


def test_resume_after_partial_run(fixture):
    fake = FakeGenerate()
    assert caption.main(_argv(fixture, "--variants", "none", "--limit", "2"), generate_fn=fake) == 0
    assert len(fake.calls) == 2
    fake2 = FakeGenerate()
    assert caption.main(_argv(fixture, "--limit", "3"), generate_fn=fake2) == 0
    assert sorted(fake2.calls) == [("none", 3), ("skip1", 1), ("skip1", 2), ("skip1", 3)]


@pytest.mark.parametrize("mutate, needle", [
    (lambda root: (root / "captions.json").unlink(), "not found"),
    (lambda root: (root / "captions.json").write_text("{oops"), "corrupt JSON"),
    (lambda root: (root / "instances.json").write_text("[]"), "instances"),
])
def test_bad_input_exit_2(fixture, capsys, mutate, needle):
    mutate(fixture)
    assert caption.main(_argv(fixture), generate_fn=FakeGenerate()) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_bad_arguments_exit_2(fixture, capsys):
    assert caption.main(_argv(fixture, "--mode", "fast"), generate_fn=FakeGenerate()) == 2
    assert caption.main(_argv(fixture, "--variants", ""), generate_fn=FakeGenerate()) == 2
    assert caption.main(_argv(fixture, "--image-dir", str(fixture / "nope"))) == 2
    # no generate_fn and no model folder
    assert caption.main(_argv(fixture, "--model", str(fixture / "no-model"))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error:") for line in err)


class _FakeState:
    device = "cpu"

    def wait_for_everyone(self):
        pass


def test_sharded_run_merges_on_rank0(fixture, monkeypatch):
    """Simulates `accelerate launch` with 2 processes, run one after the other."""
    calls = {}
    for rank in (1, 0):
        monkeypatch.setattr(caption, "_dist_info", lambda r=rank: (r, 2, _FakeState()))
        fake = FakeGenerate()
        assert caption.main(_argv(fixture), generate_fn=fake) == 0
        calls[rank] = sorted(fake.calls)
    assert calls[0] == [("none", 1), ("none", 3), ("skip1", 1), ("skip1", 3)]
    assert calls[1] == [("none", 2), ("skip1", 2)]
    out = fixture / "out"
    assert not list(out.glob("responses.rank*.jsonl"))
    assert len((out / "responses.jsonl").read_text().splitlines()) == 8
    rows = json.loads((out / "caption_report.json").read_text())["rows"]
    assert [r["n"] for r in rows] == [3, 3]
