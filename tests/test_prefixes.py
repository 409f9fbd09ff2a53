"""Shared image prefixes (:mod:`lvlm_skip.prefixes`): the layout, the stock prefix cache, and which wraps accept it.

The answers' identity at batch 1 and 8 for every variant is in ``tests/test_batched_evaluation.py``; here a
generate call handed the shared-prefix cache gives stock generate's tokens on the full prompts, and the
controllers that need the whole prompt refuse a cached prefix in one line.
"""

from __future__ import annotations

import pytest
import torch

import lvlm_skip
from lvlm_skip.anatomy import ModelAnatomy
from lvlm_skip.anatomy import placeholder_token_ids, shared_prefix_cache, shares_prefixes
from lvlm_skip.clock import UnplaceableForwardError
from lvlm_skip.inputs.models import chat_prompt, encode_inputs
from lvlm_skip.prefixes import share_prefixes
from lvlm_skip.wrapping import accepts_cached_prefix

IMAGE, PAD = 9, 0


def test_layout_puts_each_prefix_before_the_pads_and_its_suffix_after():
    ids = torch.tensor([[PAD, PAD, 1, IMAGE, IMAGE, 5, 6],
                        [PAD, 1, IMAGE, IMAGE, 5, 7, 8],
                        [1, IMAGE, IMAGE, IMAGE, 5, 6, 6]])
    mask = (ids != PAD).long()
    images = torch.tensor([[1.0], [1.0], [2.0]])
    batch = share_prefixes(ids, mask, images, {IMAGE}, PAD)
    assert batch.groups.tolist() == [0, 0, 1] and batch.prefix_rows.tolist() == [0, 2]
    assert batch.prefix_length == 4  # the longest prefix: 1 + three image tokens
    assert batch.input_ids.tolist() == [[PAD, 1, IMAGE, IMAGE, PAD, 5, 6],
                                        [PAD, 1, IMAGE, IMAGE, 5, 7, 8],
                                        [1, IMAGE, IMAGE, IMAGE, 5, 6, 6]]
    assert batch.prefix_ids.tolist() == [[PAD, 1, IMAGE, IMAGE], [1, IMAGE, IMAGE, IMAGE]]
    # every row's positions are its unpadded prompt's
    positions = batch.attention_mask.cumsum(-1) - 1
    for row, length in zip(range(3), (5, 6, 7)):
        assert positions[row][batch.attention_mask[row].bool()].tolist() == list(range(length))
    assert batch.prefix_positions.tolist() == [[0, 0, 1, 2], [0, 1, 2, 3]]


def test_no_layout_without_two_rows_that_share_or_without_a_suffix():
    ids = torch.tensor([[1, IMAGE, 5], [1, IMAGE, 6]])
    mask = torch.ones_like(ids)
    assert share_prefixes(ids, mask, torch.tensor([[1.0], [2.0]]), {IMAGE}, PAD) is None  # other pixels
    assert share_prefixes(ids, mask, torch.tensor([[1.0], [1.0]]), {IMAGE}, PAD) is not None
    assert share_prefixes(torch.tensor([[1, 5, IMAGE], [1, 5, IMAGE]]), mask, torch.ones(2, 1), {IMAGE}, PAD) is None


def _shared_inputs(tiny_llava, questions):
    model, processor = tiny_llava.model, tiny_llava.processor
    texts = [chat_prompt(processor, q) for q in questions]
    inputs = encode_inputs(processor, texts, [tiny_llava.image] * len(texts), model)
    assert shares_prefixes(model, inputs)
    return inputs, share_prefixes(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"],
                                  placeholder_token_ids(model), 0)


QUESTIONS = ["describe this image .", "is there a cup ?", "what ?"]


@pytest.mark.parametrize("variant,options", [("none", {}), ("skip3", dict(critical_layer=2, keep_last=1)),
                                              ("skip1", dict(mode="online", mutation_layers=[5])),
                                              ("dola", {}), ("deco", {})])
def test_generate_from_the_shared_prefix_cache_gives_the_full_prompts_tokens(tiny_llava, variant, options):
    model = tiny_llava.model
    inputs, batch = _shared_inputs(tiny_llava, QUESTIONS)
    argument = ModelAnatomy.from_model(model).model_cache_argument
    with torch.no_grad():
        cache = shared_prefix_cache(model, batch, inputs["pixel_values"], batch.input_ids.shape[1] + 6)
        if variant != "none":
            lvlm_skip.wrap(model, variant=variant, **options)
        try:
            assert accepts_cached_prefix(model)
            full = model.generate(**inputs, max_new_tokens=6, do_sample=False, pad_token_id=0)
            shared = model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=6,
                                    do_sample=False, pad_token_id=0, **{argument: cache})
        finally:
            if variant != "none":
                lvlm_skip.unwrap(model)
    assert torch.equal(full[:, inputs["input_ids"].shape[1]:], shared[:, batch.input_ids.shape[1]:])


@pytest.mark.parametrize("variant,options,why", [
    ("vcd", {}, "VCD's second pass"), ("skip3", dict(keep_last=1), "measures its layers on the whole prompt"),
    ("skip3", dict(critical_layer=2, keep_last=1, positions="all"), "skips at every prompt position")])
def test_a_wrap_that_needs_the_whole_prompt_refuses_a_cached_prefix(tiny_llava, variant, options, why):
    model = tiny_llava.model
    inputs, batch = _shared_inputs(tiny_llava, QUESTIONS)
    argument = ModelAnatomy.from_model(model).model_cache_argument
    with torch.no_grad():
        cache = shared_prefix_cache(model, batch, inputs["pixel_values"], batch.input_ids.shape[1] + 4)
        lvlm_skip.wrap(model, variant=variant, **options)
        try:
            assert not accepts_cached_prefix(model)
            with pytest.raises(UnplaceableForwardError, match=rf"^a prefill after \d+ cached prompt positions: .*{why}") as info:
                model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=4,
                               do_sample=False, pad_token_id=0, **{argument: cache})
            assert "\n" not in str(info.value)
        finally:
            lvlm_skip.unwrap(model)


def test_a_text_model_or_a_batch_with_image_sizes_does_not_share(tiny_llava, tiny_llama):
    inputs, _ = _shared_inputs(tiny_llava, QUESTIONS[:2])
    assert not shares_prefixes(tiny_llava.model, dict(inputs, image_sizes=torch.ones(2, 2)))
    assert not shares_prefixes(tiny_llama, {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]})
