"""recipes.layer_statistics: labelling of hallucinated words, and an end-to-end run on a tiny model."""

import json

import pytest

from lvlm_skip.scenes import generate
from recipes.layer_statistics import content_labels, main
from tiny_models import make_llava


def test_content_labels_mark_absent_objects_and_colours():
    scene = generate("test-consistent", 5, 1)[0]
    present = scene.objects[0]
    from lvlm_skip.scenes import COLORS, OBJECTS

    absent_kind = next(k for k in OBJECTS if k not in {o.kind for o in scene.objects})
    absent_colour = next(c for c in COLORS if c not in {o.color for o in scene.objects})
    words = ["a", present.color, present.kind, OBJECTS[present.kind][0], absent_colour, absent_kind, "on", "."]
    assert content_labels(words, scene) == [
        None, "correct", "correct", "correct", "hallucinated", "hallucinated", None, None,
    ]


@pytest.mark.slow
def test_main_writes_statistics_for_both_splits(tmp_path):
    model, processor = make_llava(6, image_size=112, patch_size=16)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    assert main(["--model", str(tmp_path / "model"), "--n-images", "2", "--max-new-tokens", "4", "--out", str(tmp_path / "out")]) == 0
    stats = json.loads((tmp_path / "out" / "layer_statistics.json").read_text())
    assert [s["split"] for s in stats] == ["test-consistent", "test-breaking"]
    for s in stats:
        assert len(s["mutation_rate_by_layer"]) == 6 and len(s["mean_jsd"]) == 6
        assert sum(s["critical_layer_counts"].values()) == s["tokens"] > 0
    assert "| test-breaking |" in (tmp_path / "out" / "layer_statistics.md").read_text()


def test_missing_model_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m recipes.layer_statistics: error: ") and "does not exist" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("out", ["file", "/proc/x"])
def test_unusable_out_is_exit_2_before_the_model_loads(out, tmp_path, capsys, monkeypatch):
    import lvlm_skip.inputs.models

    monkeypatch.setattr(lvlm_skip.inputs.models, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / out) if out == "file" else out])
    assert exit_info.value.code == 2
    assert "--out" in capsys.readouterr().err
