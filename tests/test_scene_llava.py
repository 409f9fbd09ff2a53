"""Tests for the scene-llava builders and the shipped model (recipes.scene_llava)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

from lvlm_skip.inputs.models import chat_prompt
from lvlm_skip.scenes import make_scene
from recipes.evaluate_scene_llava import caption_metrics, mentions
from recipes.pretrain_scene_vision import pretrain_vision, targets
from recipes.scene_llava import IMAGE, SceneLlavaSpec, build_model, build_processor
from recipes.train_scene_llava import collate, sample_example

#: The LLaVA-1.5 single-turn prompt scene-llava was trained on.
TRAINED_PROMPT = "USER: <image>\nDescribe this image. ASSISTANT:"

MODEL_DIR = Path(__file__).resolve().parents[1] / "recipes" / "models" / "scene-llava"
TINY = SceneLlavaSpec(hidden=32, layers=2, heads=2, intermediate=64, vision_hidden=32,
                      vision_layers=1, vision_heads=2)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    proc = build_processor(TINY)
    return proc, build_model(TINY, proc).eval()


def test_processor_expands_image_token(tiny):
    proc, _ = tiny
    tok = proc.tokenizer
    image_id = tok.convert_tokens_to_ids(IMAGE)
    assert chat_prompt(proc, "Describe this image.") == TRAINED_PROMPT
    enc = proc(images=make_scene("test", 0, 0).image, text=TRAINED_PROMPT, return_tensors="pt")
    assert int((enc["input_ids"] == image_id).sum()) == TINY.num_image_tokens == 49
    assert enc["pixel_values"].shape == (1, 3, 112, 112)
    words = tok.convert_ids_to_tokens(enc["input_ids"][0])
    assert words[:3] == ["<s>", "user", ":"] and words[-2:] == ["assistant", ":"]
    assert "<unk>" not in words


def test_the_prompt_without_the_image_keeps_the_question(tiny):
    """with_image=False on a vision-language processor: its chat format with a text-only message (a multimodal
    template reads content as typed parts; a string was dropped, leaving "USER: ASSISTANT:")."""
    proc, _ = tiny
    assert chat_prompt(proc, "Describe this image.", with_image=False) == TRAINED_PROMPT.replace("<image>\n", "")
    words = proc.tokenizer.convert_ids_to_tokens(proc.tokenizer(chat_prompt(proc, "is there a red ball ?", with_image=False)).input_ids)
    assert words == ["<s>", "user", ":", "is", "there", "a", "red", "ball", "?", "assistant", ":"]


def test_tokenizer_round_trip(tiny):
    tok = tiny[0].tokenizer
    cap = make_scene("train", 0, 3).caption()
    ids = tok(cap, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == cap


def test_forward_and_generate(tiny):
    proc, model = tiny
    batch = collate(proc, [sample_example(0, i) for i in range(3)])
    out = model(**batch)
    assert torch.isfinite(out.loss)
    # loss only on answers: prompt positions are masked
    assert (batch["labels"][:, :10] == -100).all()
    enc = proc(images=make_scene("test", 0, 1).image, text=TRAINED_PROMPT, return_tensors="pt")
    gen = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] <= enc["input_ids"].shape[1] + 4


def test_vision_pretraining_targets_and_step(tiny):
    proc, model = tiny
    sc = make_scene("test", 0, 2)
    t = targets(sc)
    assert int((t[:, 0] > 0).sum()) == len(sc.objects)
    before = [p.detach().clone() for p in model.model.vision_tower.parameters()]
    res = pretrain_vision(model, proc, seed=0, steps=2, batch_size=4)
    after = list(model.model.vision_tower.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert 0.0 <= res["kind_acc"] <= 1.0
    model.eval()


def test_caption_metrics_parse():
    sc = make_scene("test-breaking", 0, 0)
    assert caption_metrics([sc], [sc.caption()])["cover"] == 1.0
    assert caption_metrics([sc], [sc.caption()])["chair_i"] == 0.0
    partner = sc.prior_partners_absent()[0]
    bad = caption_metrics([sc], [sc.caption() + f" a red {partner} on the left."])
    assert bad["hal_captions"] == 1.0 and bad["hallu_are_prior_partner"] == 1.0
    assert mentions("two blue cups and a tree.") == [("cup", "blue"), ("tree", None)]


@pytest.mark.slow
@pytest.mark.skipif(not (MODEL_DIR / "model.safetensors").is_file(),
                    reason=f"no trained model at {MODEL_DIR}: run "
                           "python -m recipes.train_scene_llava --out recipes/models/scene-llava")
def test_shipped_model_loads_and_captions():
    proc = AutoProcessor.from_pretrained(MODEL_DIR)
    model = LlavaForConditionalGeneration.from_pretrained(MODEL_DIR).eval()
    assert model.config.text_config.num_hidden_layers >= 16
    assert (MODEL_DIR / "model.safetensors").stat().st_size <= 30 * 2**20
    sc = make_scene("test-consistent", 12345, 0)
    enc = proc(images=sc.image, text=chat_prompt(proc, "Describe this image."), return_tensors="pt")
    gen = model.generate(**enc, max_new_tokens=40, do_sample=False)
    text = proc.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert mentions(text), text


# ------------------------------------------------------------------- the train / evaluate commands


def test_train_and_evaluate_write_under_runs_by_default():
    from recipes import evaluate_scene_llava, train_scene_llava

    assert train_scene_llava.build_parser().parse_args([]).out == "runs/scene-llava"
    assert evaluate_scene_llava.build_parser().parse_args([]).out == "runs/scene-llava-eval"


@pytest.mark.parametrize("recipe", ["train_scene_llava", "evaluate_scene_llava"])
@pytest.mark.parametrize("out", ["file", "/proc/x"])
def test_unusable_out_is_one_line_and_exit_2_before_any_work(recipe, out, tmp_path, capsys, monkeypatch):
    import importlib

    import lvlm_skip.inputs.models

    module = importlib.import_module(f"recipes.{recipe}")
    monkeypatch.setattr(lvlm_skip.inputs.models, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    monkeypatch.setattr(module, "build_processor", lambda *a, **k: pytest.fail("built a model"), raising=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--out", str(tmp_path / out) if out == "file" else out])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m recipes.{recipe}: error: --out ") and len(err.strip().splitlines()) == 1


def test_evaluate_with_a_missing_model_is_one_line(tmp_path, capsys):
    from recipes.evaluate_scene_llava import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_results_table_when_a_split_asked_no_question_of_a_type():
    """The cause of ``--n-images 4``'s KeyError: few scenes of a split need not yield every question type."""
    from recipes.evaluate_scene_llava import results_table

    captions = {k: 0.5 for k in ("cover", "chair_i", "hal_captions", "hallu_are_prior_partner", "wrong_color_rate",
                                 "wrong_color_is_typical", "exact_match")}
    relation = {"accuracy": 0.8, "n": 5}
    results = {split: {"captions": captions, "qa": {"yes_rate": 0.1, "vqa-color": {"accuracy": 0.5, "n": 2}}}
               for split in ("test-consistent", "test-breaking", "test")}
    results["test-consistent"]["qa"]["discriminative-relation"] = relation
    results["test"]["qa"]["discriminative-relation"] = relation
    rows = {line.split("|")[1].strip(): line for line in results_table(results).splitlines()}
    assert rows["accuracy: discriminative-relation"].split("|")[2:5] == [" 80.0% (n=5) ", " - (n=0) ", " 80.0% (n=5) "]


@pytest.mark.slow
@pytest.mark.skipif(not (MODEL_DIR / "model.safetensors").is_file(), reason="no shipped scene-llava")
def test_evaluate_four_images_of_the_shipped_model(tmp_path):
    from recipes.evaluate_scene_llava import main

    assert main(["--n-images", "4", "--out", str(tmp_path), "--no-progress"]) == 0
    table = (tmp_path / "eval_results.md").read_text()
    assert "accuracy: discriminative-relation" in table and "- (n=0)" in table  # test-breaking asked none
    assert {"test-consistent", "test-breaking", "test"} <= set(json.loads((tmp_path / "eval_results.json").read_text()))


@pytest.mark.slow
def test_train_one_step_writes_a_loadable_model_into_out(tmp_path):
    from recipes.train_scene_llava import main

    out = tmp_path / "run"
    assert main(["--out", str(out), "--steps", "1", "--vision-steps", "0", "--hidden", "32", "--layers", "2",
                 "--intermediate", "64", "--batch-size", "2", "--threads", "1"]) == 0
    assert json.loads((out / "train_summary.json").read_text())["steps_done"] == 1
    from lvlm_skip.inputs.models import load_model

    model, _ = load_model(out, progress=False)
    assert model.config.text_config.num_hidden_layers == 2
