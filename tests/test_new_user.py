"""Issue 23: what a new user meets — refusals at wrap, the full variant list, honest speed notes."""

import types

import pytest

import lvlm_skip
from lvlm_skip.variants import VARIANTS
from tiny_models import make_llava_bare


def test_wrap_unknown_variant_lists_all_nine():
    model = make_llava_bare()
    with pytest.raises(ValueError) as err:
        lvlm_skip.wrap(model, variant="skipX")
    for name in VARIANTS:
        assert name in str(err.value)
    for peer in ("dola", "deco", "vcd"):
        assert peer in str(err.value)
    assert getattr(model, "_lvlm_skip_state", None) is None


def test_wrap_refuses_linear_attention_before_generation():
    model = make_llava_bare()
    model.config.text_config.layer_types = ["linear_attention", "full_attention"]
    with pytest.raises(lvlm_skip.UnsupportedModelError, match="linear-attention"):
        lvlm_skip.wrap(model, variant="skip1", critical_layer=1)
    assert getattr(model, "_lvlm_skip_state", None) is None


def test_speed_fewer_than_three_runs_judges_nothing():
    from lvlm_skip.speed import benchmark as speed

    rows = [{"config": "stock", "spread_pct": 0.0, "met": "no", "median_ms": 1.0}]
    printed, note = speed.unjudged(rows, 1)
    assert printed[0]["spread_pct"] == "-" and printed[0]["met"] == "-" and printed[0]["median_ms"] == 1.0
    assert "no spread or target can be judged" in note
    printed, note = speed.unjudged(rows, 3)
    assert note is None and printed == rows


def test_printed_evaluation_table_leaves_out_timing():
    from lvlm_skip.evaluation.report import VariantRow
    from lvlm_skip.evaluation.runner import EvaluationReport

    row = VariantRow(variant="none", metrics={"chair": 1.0}, tokens_per_s=10.0, speedup=1.0, layers_skipped=0.0, n=1, errors=0)
    report = EvaluationReport(rows=[row], columns=["variant", "chair", "tokens_per_s", "speedup", "layers_skipped", "n", "errors"])
    assert "speedup" not in report.table() and "tokens_per_s" not in report.table()
    assert "speedup" in report.table(timing=True)


def test_progress_one_log_line_per_finished_variant_and_no_per_item_noise(caplog):
    import logging

    from lvlm_skip.evaluation.records import AnswerRecord
    from lvlm_skip.evaluation.runner import _VariantProgress

    progress = _VariantProgress(show_bar=False, rank=0)
    with caplog.at_level(logging.INFO, logger="lvlm_skip.evaluation.runner"):
        progress.start("none", 2)
        progress.count([AnswerRecord(variant="none", id=1, response="a", new_tokens=1, seconds=0.1)])
        progress.count([AnswerRecord(variant="none", id=2, error="broken")])
        progress.start("skip1", 3)
        progress.count([AnswerRecord(variant="skip1", id=i, error="broken") for i in range(3)])
        progress.finish()
    messages = [r.getMessage() for r in caplog.records]
    done = [m for m in messages if "done:" in m]
    assert len(done) == 2 and "none done: 2 item(s)" in done[0] and "1 error record(s)" in done[0]
    assert "skip1 done: 3 item(s)" in done[1] and "items/s" in done[1] and "3 error record(s)" in done[1]
    # the first error of each variant is a warning, the rest are counted, not printed
    assert [r.levelno for r in caplog.records if "broken" in r.getMessage()] == [logging.WARNING, logging.WARNING]


def test_profile_data_finds_amber_sibling_image_folder(tmp_path):
    from amber_fixture import write_amber

    from lvlm_skip.errors import InputError
    from lvlm_skip.profiles.measure import load_profile_data

    write_amber(tmp_path / "AMBER" / "data", tmp_path / "AMBER" / "image")
    data = load_profile_data(tmp_path / "AMBER" / "data", limit=200)
    assert len(data.items) == 2
    assert all(item.image.parent == (tmp_path / "AMBER" / "image").resolve() for item in data.items)
    with pytest.raises(InputError) as err:
        load_profile_data(tmp_path / "AMBER" / "data", image_dir=tmp_path / "elsewhere")
    assert "image_dir" in str(err.value) and "--image-dir" not in str(err.value)
    with pytest.raises(InputError, match="--image-dir"):
        load_profile_data(tmp_path / "AMBER" / "data", image_dir=tmp_path / "elsewhere", image_option="--image-dir")


@pytest.mark.parametrize("variant", ["skip3", "skip1"])
def test_online_no_confirmed_critical_layer_is_noted_once(variant):
    import numpy as np
    from PIL import Image

    from lvlm_skip.inputs.builtin_models import build_tiny_llava
    from lvlm_skip.inputs.models import chat_prompt

    model, processor = build_tiny_llava(num_layers=6, hidden_size=64, intermediate_size=128, seed=1)
    image = Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype("uint8"))
    inputs = processor(images=image, text=chat_prompt(processor, "describe this image ."), return_tensors="pt")
    # a patience no 6-layer model can meet: no critical layer is ever confirmed
    never = dict(min_shallow_layers=1, patience=50)
    options = {"mutation_layers": (5,)} if variant == "skip1" else {}
    lvlm_skip.wrap(model, variant=variant, mode="online", detection=never, candidates=0, **options)
    try:
        for _ in range(2):  # once per generation: a second generate starts its notes afresh
            model.generate(**inputs, max_new_tokens=4, do_sample=False)
            report = lvlm_skip.last_report(model)
            assert not report.skipped.any()
            assert report.notes == [f"row 0: no critical layer confirmed at any step: {variant} skips nothing"]
    finally:
        lvlm_skip.unwrap(model)


def test_trace_watch_word_refused_before_loading(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    import lvlm_skip.inputs.models as models
    from lvlm_skip.cli import main

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before --watch was checked")

    monkeypatch.setattr(models, "load_model", no_loading)
    scene_llava = Path(lvlm_skip.__file__).resolve().parents[1] / "recipes" / "models" / "scene-llava"
    with pytest.raises(SystemExit) as info:
        main(["trace", "--model", str(scene_llava), "--image", "demo", "--watch", "red,zzqxj", "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--watch" in err and "'zzqxj' is not in the vocabulary" in err


def test_variant_options_layer_range_refused_before_loading(tmp_path, monkeypatch, capsys):
    import json
    from pathlib import Path

    import lvlm_skip.evaluation.generation as generation
    import lvlm_skip.inputs.models as models
    from lvlm_skip.cli import main

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before --variant-options was checked")

    monkeypatch.setattr(models, "load_model", no_loading)
    if hasattr(generation, "load_model"):
        monkeypatch.setattr(generation, "load_model", no_loading)
    scene_llava = Path(lvlm_skip.__file__).resolve().parents[1] / "recipes" / "models" / "scene-llava"
    depth = json.loads((scene_llava / "config.json").read_text())["text_config"]["num_hidden_layers"]
    (tmp_path / "images").mkdir()
    with pytest.raises(SystemExit) as info:
        main(["amber", "--model", str(scene_llava), "--amber-root", str(tmp_path), "--image-dir", str(tmp_path / "images"),
              "--variants", "layers", "--variant-options", json.dumps({"layers": {"layers": [depth + 1]}}),
              "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--variant-options" in err and f"layers {depth + 1} is out of range" in err, err
