"""``lvlm-skip caption`` in-process, with a fake generator instead of a model."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from lvlm_skip.cli import main
from lvlm_skip.evaluation.generation import Generation
from lvlm_skip.evaluation.processes import Processes

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
        return Generation(text, n, n * (0.1 if variant == "none" else 0.05))


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
    return ["caption", "--model", "tiny", "--captions", str(root / "captions.json"), "--image-dir", str(root / "images"),
            "--instances", str(root / "instances.json"), "--variants", "none,skip1",
            "--out", str(root / "out"), "--metrics", "bleu,rouge,cider", "--no-progress", *extra]


def test_end_to_end_report_resume_and_errors(fixture, use_generator, capsys):
    fake = FakeGenerate()
    use_generator(fake)
    assert main(_argv(fixture)) == 0
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
    assert none["tokens_per_s"] == pytest.approx(10.0)
    assert 0 < none["Bleu_1"] <= 1 and "CIDEr" in none and "ROUGE_L" in none
    assert report["meta"]["run"]["prompt"] == "Please describe this image in detail."
    details = json.loads((out / "caption_report_details.json").read_text())
    assert details["chair"]["skip1"]["3"]["hallucinated"] == [["dog", "dog"]]
    md = (out / "caption_report.md").read_text()
    assert "| skip1" in md and "CHAIR_S" in md
    printed = capsys.readouterr().out
    assert "skip1" in printed and "close_edit_similarity" in printed

    # resume: the errored image is retried (and fails again), the report is rebuilt identically
    fake2 = FakeGenerate()
    use_generator(fake2)
    assert main(_argv(fixture)) == 0
    assert fake2.calls == []
    assert json.loads((out / "caption_report.json").read_text())["rows"] == report["rows"]
    # score-only needs no image dir and no model
    assert main(["caption", "--captions", str(fixture / "captions.json"), "--out", str(out),
                 "--variants", "none,skip1", "--metrics", "bleu", "--score-only"]) == 0


def test_resume_after_partial_run(fixture, use_generator):
    fake = FakeGenerate()
    use_generator(fake)
    assert main(_argv(fixture, "--variants", "none", "--limit", "2")) == 0
    assert len(fake.calls) == 2
    fake2 = FakeGenerate()
    use_generator(fake2)
    assert main(_argv(fixture, "--limit", "3")) == 0  # more items and a new variant: a legitimate extension
    assert sorted(fake2.calls) == [("none", 3), ("skip1", 1), ("skip1", 2), ("skip1", 3)]


@pytest.mark.parametrize("mutate, needle", [
    (lambda root: (root / "captions.json").unlink(), "not found"),
    (lambda root: (root / "captions.json").write_text("{oops"), "corrupt JSON"),
    (lambda root: (root / "instances.json").write_text("[]"), "instances"),
])
def test_bad_input_exit_2(fixture, use_generator, capsys, mutate, needle):
    use_generator(FakeGenerate())
    mutate(fixture)
    with pytest.raises(SystemExit) as info:
        main(_argv(fixture))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and err.startswith("lvlm-skip: error: ")


@pytest.mark.parametrize("extra, needle", [
    (["--mode", "fast"], "--mode"),
    (["--variants", ""], "no variant"),
    (["--image-dir", "nope"], "--image-dir"),
    (["--metrics", "bleu,blue"], "blue"),
    (["--model", "no-model-here"], "no-model-here"),
])
def test_bad_arguments_exit_2(fixture, capsys, extra, needle):
    with pytest.raises(SystemExit) as info:
        main(_argv(fixture, *extra))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lvlm-skip: error: ") and needle in err[0], err


def test_sharded_run_merges_on_rank0(fixture, use_generator, monkeypatch):
    """Two processes of one run, simulated in-process: rank 1 runs inside rank 0's barrier."""
    from lvlm_skip.evaluation import runner

    calls = {0: FakeGenerate(), 1: FakeGenerate()}

    class Rank0(Processes):
        rank1_ran = False

        def barrier(self):  # the first barrier (every rank has read the folder): rank 1 runs to its end
            if not self.rank1_ran:
                self.rank1_ran = True
                monkeypatch.setattr(runner, "current_processes", lambda: Processes(rank=1, world=2))
                use_generator(calls[1])
                assert main(_argv(fixture)) == 0
                use_generator(calls[0])

    monkeypatch.setattr(runner, "current_processes", lambda: Rank0(rank=0, world=2))
    use_generator(calls[0])
    assert main(_argv(fixture)) == 0
    assert sorted(calls[0].calls) == [("none", 1), ("none", 3), ("skip1", 1), ("skip1", 3)]
    assert sorted(calls[1].calls) == [("none", 2), ("skip1", 2)]
    out = fixture / "out"
    assert not list(out.glob("responses.rank*.jsonl"))
    assert len((out / "responses.jsonl").read_text().splitlines()) == 8
    rows = json.loads((out / "caption_report.json").read_text())["rows"]
    assert [r["n"] for r in rows] == [3, 3]
