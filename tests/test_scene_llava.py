"""Tests for the scene-llava builders and the shipped model (recipes.scene_llava)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

from lvlm_skip.loading import chat_prompt
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
