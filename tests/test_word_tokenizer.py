"""One word-level tokenizer builder (lvlm_skip.inputs.builtin_models.build_word_tokenizer) for the demo models and scene-llava.

Both tokenizers it builds must stay byte-identical to what was shipped and saved before the two
builders were merged: scene-llava's against the files in ``recipes/models/scene-llava``, the demo
tokenizer against ``tests/data/demo_tokenizer`` (saved by the demo builder before the merge).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lvlm_skip.inputs.builtin_models import DEMO_WORDS, build_word_tokenizer

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "recipes" / "models" / "scene-llava"
DEMO_REFERENCE = Path(__file__).resolve().parent / "data" / "demo_tokenizer"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def test_scene_llava_processor_reproduces_the_shipped_files_byte_for_byte(tmp_path):
    from recipes.scene_llava import build_processor

    build_processor().save_pretrained(tmp_path)
    for name in (*TOKENIZER_FILES, "chat_template.jinja", "processor_config.json"):
        assert (tmp_path / name).read_bytes() == (SHIPPED / name).read_bytes(), name


def test_demo_tokenizer_is_unchanged_byte_for_byte(tmp_path):
    build_word_tokenizer().save_pretrained(tmp_path)
    for name in TOKENIZER_FILES:
        assert (tmp_path / name).read_bytes() == (DEMO_REFERENCE / name).read_bytes(), name


def test_the_two_splits_and_the_bos_option():
    words = ["a", "red", "cup", "on", "the", "left", ".", ",", "+"]
    demo = build_word_tokenizer(words)
    scene = build_word_tokenizer(words, split="regex", add_bos=True, model_max_length=64)
    text = "A red cup, on the left."
    assert demo.convert_ids_to_tokens(demo(text)["input_ids"]) == ["a", "red", "cup", ",", "on", "the", "left", "."]
    assert scene.convert_ids_to_tokens(scene(text)["input_ids"])[0] == "<s>"
    assert scene(text, add_special_tokens=False)["input_ids"] == demo(text)["input_ids"]
    assert demo.decode(demo(text)["input_ids"]) == "a red cup, on the left."
    assert scene.model_max_length == 64
    # the ids: special tokens first in the given order, repeats dropped
    assert build_word_tokenizer(["b", "a", "b"]).convert_tokens_to_ids(["<unk>", "<pad>", "b", "a"]) == [0, 1, 5, 6]


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="split"):
        build_word_tokenizer(DEMO_WORDS, split="bytes")
    with pytest.raises(ValueError, match="<image>"):
        build_word_tokenizer(DEMO_WORDS, special_tokens=("<unk>", "<pad>", "<s>", "</s>"))


def test_no_second_builder_or_prompt_formatter_is_left():
    import lvlm_skip.inputs.builtin_models
    import recipes.scene_llava

    assert not hasattr(lvlm_skip.inputs.builtin_models, "llava_prompt")
    assert not hasattr(recipes.scene_llava, "prompt")
    assert recipes.scene_llava.build_tokenizer.__code__.co_names.count("build_word_tokenizer") == 1
    source = Path(recipes.scene_llava.__file__).read_text()
    assert "WordLevel" not in source and "pre_tokenizers" not in source
