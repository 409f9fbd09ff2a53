"""lvlm_skip.anatomy.ReservedDynamicLayer / reserved_cache: the same cache as transformers' DynamicLayer,
operation by operation, and the same tokens from generate, without copying the cache at every step."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from lvlm_skip.anatomy import ModelAnatomy, ReservedDynamicLayer, reserved_cache
from tiny_models import make_causal_lm, make_llama


def _states(batch, new, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, new, 4, generator=g), torch.randn(batch, 2, new, 4, generator=g)


def _same(reserved, stock):
    assert reserved.get_seq_length() == stock.get_seq_length()
    assert torch.equal(reserved.keys, stock.keys) and torch.equal(reserved.values, stock.values)


@pytest.mark.parametrize("reserve", [0, 3, 64])
def test_every_operation_leaves_the_cache_of_a_dynamic_layer(reserve):
    reserved, stock = ReservedDynamicLayer(reserve), DynamicLayer()
    assert reserved.get_seq_length() == stock.get_seq_length() == 0
    returned = []
    steps = [("update", 5), ("update", 1), ("update", 1), ("crop", -2), ("update", 3), ("repeat", 2), ("update", 1),
             ("select", torch.tensor([0, 3])), ("update", 1), ("reorder", torch.tensor([1, 0])), ("crop", -1),
             ("update", 4), ("update", 1)]
    for i, (operation, argument) in enumerate(steps):
        batch = stock.keys.shape[0] if stock.get_seq_length() else 2
        if operation == "update":
            keys, values = _states(batch, argument, i)
            got, want = reserved.update(keys, values), stock.update(keys, values)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
            returned.append((got[0], want[0].clone()))
        elif operation == "crop":
            reserved.crop(argument), stock.crop(argument)
        elif operation == "repeat":
            reserved.batch_repeat_interleave(argument), stock.batch_repeat_interleave(argument)
        elif operation == "select":
            reserved.batch_select_indices(argument), stock.batch_select_indices(argument)
        else:
            reserved.reorder_cache(argument), stock.reorder_cache(argument)
        _same(reserved, stock)
    # what an update returned is never written over by a later one (a crop and regrowth included)
    assert all(torch.equal(got, kept) for got, kept in returned)
    reserved.reset(), stock.reset()
    assert reserved.get_seq_length() == stock.get_seq_length() == 0


def test_updates_within_the_reserve_write_in_place():
    layer = ReservedDynamicLayer(16)
    layer.update(*_states(1, 10, 0))
    buffer = layer._key_buffer
    for step in range(6):
        keys, _ = layer.update(*_states(1, 1, step + 1))
        assert layer._key_buffer is buffer and keys.data_ptr() == buffer.data_ptr()
    layer.update(*_states(1, 1, 9))  # past the reserve: a new buffer with room to double
    assert layer._key_buffer is not buffer and layer._key_buffer.shape[-2] == 32 and layer.get_seq_length() == 17


def test_generate_with_a_reserved_cache_gives_stock_tokens_and_fills_it():
    model = make_llama(4)
    ids = torch.tensor([[0, 1, 5, 6, 7], [1, 5, 6, 7, 8]])
    inputs = {"input_ids": ids, "attention_mask": torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])}
    argument = ModelAnatomy.from_model(model).model_cache_argument
    cache = reserved_cache(model, 5 + 12)
    with torch.no_grad():
        stock = model.generate(**inputs, max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0)
        ours = model.generate(**inputs, max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0,
                              **{argument: cache})
    assert torch.equal(ours, stock)
    assert all(type(layer) is ReservedDynamicLayer for layer in cache.layers)
    assert cache.get_seq_length() == 5 + 11 and cache.layers[0]._key_buffer.shape[-2] == 17  # no regrowth


def test_other_layer_types_stay_transformers():
    model = make_causal_lm("MistralForCausalLM", 2, sliding_window=4)
    types = {type(layer) for layer in reserved_cache(model, 8).layers}
    assert types == {DynamicSlidingWindowLayer}
