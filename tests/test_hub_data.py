"""Benchmarks read as the hub ships them (``pope --dataset``, ``caption --dataset``): the same answers and
scores as the JSON formats, offline, from parquet files, folders and save_to_disk folders; one-line errors;
the dataset's files in the fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("datasets")

from lvlm_skip.cli import main  # noqa: E402
from lvlm_skip.data.hub import CAPTION_COLUMNS, POPE_COLUMNS, HubDataError, open_hub_dataset, pope_questions  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "recipes" / "models" / "scene-llava"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from lvlm_skip.scenes.export import export

    return export(tmp_path_factory.mktemp("hub") / "bench", 3, 0)


def _answers(out: Path) -> dict:
    return {(r["variant"], str(r["id"])): r["response"] for r in map(json.loads, open(out / "responses.jsonl"))}


def _report(out: Path, stem: str) -> dict:
    return json.loads((out / f"{stem}.json").read_text())


def test_scenes_writes_the_hub_schemas(bench):
    pope = open_hub_dataset(bench / "hub" / "pope" / "random.parquet", POPE_COLUMNS)
    assert set(pope.rows.column_names) == {"id", "question_id", "question", "answer", "image_source", "image", "category"}
    assert {q.split for q in pope_questions(pope)} == {"random"} and pope.image(0).mode == "RGB"
    captions = open_hub_dataset(bench / "hub" / "coco_caption" / "test.parquet", CAPTION_COLUMNS)
    assert set(captions.rows.column_names) == {"question_id", "id", "answer", "image"}


def test_pope_dataset_gives_the_answers_and_scores_of_the_question_files(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    common = ["--model", str(MODEL), "--variants", "none,skip2:online", "--limit", "4", "--device", "cpu", "--no-progress"]
    assert main(["pope", "--pope-root", str(bench / "pope"), "--image-dir", str(bench / "images"),
                 "--out", str(tmp_path / "json"), *common]) == 0
    assert main(["pope", "--dataset", str(bench / "hub" / "pope"), "--out", str(tmp_path / "hub"), *common]) == 0
    assert _answers(tmp_path / "hub") == _answers(tmp_path / "json") and len(_answers(tmp_path / "json")) == 24
    theirs, mine = _report(tmp_path / "json", "pope_all"), _report(tmp_path / "hub", "pope_all")
    assert [r["avg_F1"] for r in mine["rows"]] == [r["avg_F1"] for r in theirs["rows"]]
    run = json.loads((tmp_path / "hub" / "run.json").read_text())["run"]
    assert run["image_dir"] == "in the data files"
    assert {k for k in run if k.startswith("dataset_") and k.endswith("_sha256")} == \
        {"dataset_0_sha256", "dataset_1_sha256", "dataset_2_sha256"}


def test_save_to_disk_folder_and_one_split(bench, tmp_path):
    import datasets

    folder = tmp_path / "saved"
    datasets.load_dataset("parquet", data_files=str(bench / "hub" / "pope" / "popular.parquet"), split="train") \
        .save_to_disk(str(folder))
    assert main(["pope", "--dataset", str(folder), "--split", "popular", "--model", str(MODEL), "--limit", "2",
                 "--device", "cpu", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert len(_answers(tmp_path / "out")) == 2 and (tmp_path / "out" / "pope_popular.json").is_file()


def test_caption_dataset_gives_the_answers_of_the_caption_file(bench, tmp_path):
    common = ["--model", str(MODEL), "--variants", "none", "--metrics", "bleu", "--max-new-tokens", "16",
              "--device", "cpu", "--no-progress"]
    assert main(["caption", "--captions", str(bench / "captions.json"), "--image-dir", str(bench / "images"),
                 "--out", str(tmp_path / "json"), *common]) == 0
    assert main(["caption", "--dataset", str(bench / "hub" / "coco_caption" / "test.parquet"),
                 "--out", str(tmp_path / "hub"), *common]) == 0
    assert _answers(tmp_path / "hub") == _answers(tmp_path / "json") and len(_answers(tmp_path / "json")) == 3
    theirs, mine = _report(tmp_path / "json", "caption_report"), _report(tmp_path / "hub", "caption_report")
    assert mine["rows"][0]["Bleu_1"] == theirs["rows"][0]["Bleu_1"]


def test_a_changed_dataset_file_refuses_the_folder(bench, tmp_path):
    import shutil

    data = tmp_path / "pope.parquet"
    shutil.copy(bench / "hub" / "pope" / "random.parquet", data)
    argv = ["pope", "--dataset", str(data), "--model", "tiny", "--limit", "1", "--max-new-tokens", "2",
            "--device", "cpu", "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 0
    shutil.copy(bench / "hub" / "pope" / "popular.parquet", data)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file or folder"),
    ("not-parquet", "expected a .parquet file"),
    ("empty-folder", "no .parquet file"),
    ("corrupt", "not a readable dataset"),
    ("no-column", "missing column(s) answer"),
    ("bad-label", "'answer' must be yes or no"),
])
def test_bad_datasets_are_one_line(case, message, bench, tmp_path, capsys):
    import datasets

    path = {"missing": tmp_path / "nothing", "not-parquet": tmp_path / "a.json", "empty-folder": tmp_path / "empty",
            "corrupt": tmp_path / "bad.parquet", "no-column": tmp_path / "cols.parquet",
            "bad-label": tmp_path / "label.parquet"}[case]
    source = datasets.load_dataset("parquet", data_files=str(bench / "hub" / "pope" / "random.parquet"), split="train")
    datasets.disable_progress_bars()  # the fixture's own writes would print bars on stderr
    if case == "not-parquet":
        path.write_text("{}")
    elif case == "empty-folder":
        path.mkdir()
    elif case == "corrupt":
        path.write_bytes(b"PAR1 not really")
    elif case == "no-column":
        source.remove_columns("answer").to_parquet(str(path))
    elif case == "bad-label":
        source.map(lambda row: {"answer": "maybe"}).to_parquet(str(path))
    datasets.enable_progress_bars()
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["pope", "--dataset", str(path), "--model", "tiny", "--device", "cpu", "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line and str(path.name) in line


def test_a_corrupt_embedded_image_is_an_error_record(bench, tmp_path):
    import datasets

    source = datasets.load_dataset("parquet", data_files=str(bench / "hub" / "pope" / "random.parquet"), split="train")
    source = source.cast_column("image", datasets.Image(decode=False))
    broken = source.map(lambda row, i: {"image": {"bytes": b"not an image" if i == 0 else row["image"]["bytes"],
                                                  "path": row["image"]["path"]}}, with_indices=True)
    broken.to_parquet(str(tmp_path / "broken.parquet"))
    assert main(["pope", "--dataset", str(tmp_path / "broken.parquet"), "--model", "tiny", "--limit", "2",
                 "--max-new-tokens", "2", "--device", "cpu", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    records = [json.loads(line) for line in open(tmp_path / "out" / "responses.jsonl")]
    errors = [r for r in records if r.get("error")]
    assert len(records) == 2 and len(errors) == 1 and "cannot be decoded" in errors[0]["error"]


def test_image_dir_with_dataset_is_refused(bench, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["pope", "--dataset", str(bench / "hub" / "pope"), "--image-dir", str(bench / "images"), "--model", "tiny",
              "--out", str(tmp_path / "out")])
    assert "--image-dir is not used with it" in capsys.readouterr().err
