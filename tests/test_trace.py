"""trace() on the tiny LLaVA against the stock generate and a from-scratch recomputation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lvlm_skip import Trace, trace
from lvlm_skip.anatomy import ModelAnatomy
from lvlm_skip.divergence import js_divergence
from lvlm_skip.readout import layer_logits_from_hidden_states

STEPS, TOP_K, WATCH = 5, 3, ["red", "black"]


@pytest.fixture(scope="module")
def traced(tiny_llava):
    return trace(tiny_llava.model, tiny_llava.inputs, processor=tiny_llava.processor, max_new_tokens=STEPS, top_k=TOP_K,
                 watch_tokens=WATCH, keep_hidden=True)


@pytest.fixture(scope="module")
def stock(tiny_llava):
    with torch.no_grad():
        return tiny_llava.model.generate(**tiny_llava.inputs, max_new_tokens=STEPS, do_sample=False, num_beams=1,
                                         output_logits=True, return_dict_in_generate=True)


def _recomputed_logprobs(tiny_llava, sequences, readout="normed"):
    """Log-probabilities `(L + 1, batch, steps, vocab)` of every readout ``j = 0..L`` at each predicting position."""
    model, inputs = tiny_llava.model, tiny_llava.inputs
    prompt_length = inputs["input_ids"].shape[1]
    with torch.no_grad():
        out = model(input_ids=sequences, attention_mask=torch.ones_like(sequences), pixel_values=inputs["pixel_values"],
                    output_hidden_states=True)
        anatomy = ModelAnatomy.from_model(model)
        logits = layer_logits_from_hidden_states(anatomy, out.hidden_states, readout=readout, include_embeddings=True)
    positions = torch.arange(prompt_length - 1, sequences.shape[1] - 1)
    return torch.log_softmax(logits[:, :, positions].float(), dim=-1)


def test_shapes_and_meta(traced, tiny_llava):
    L, W = tiny_llava.model.config.text_config.num_hidden_layers, len(WATCH)
    hidden = tiny_llava.model.config.text_config.hidden_size
    assert traced.token_ids.shape == (1, STEPS)
    assert traced.token_probs.shape == (1, STEPS, L)
    assert traced.topk_ids.shape == traced.topk_probs.shape == (1, STEPS, L, TOP_K)
    assert traced.watch_probs.shape == (1, STEPS, L, W)
    assert traced.jsd.shape == traced.top1_changed.shape == traced.mutation.shape == (1, STEPS, L)
    assert traced.critical.shape == (1, STEPS)
    assert traced.hidden.shape == (1, STEPS, L + 1, hidden)
    assert traced.num_layers == L and traced.first_layer == 1
    assert list(traced.layer_numbers) == list(range(1, L + 1))
    assert len(traced.tokens[0]) == traced.lengths[0] and isinstance(traced.texts[0], str)
    assert traced.meta["readout"] == "normed" and traced.meta["reduction"] == "sum" and traced.meta["top_k"] == TOP_K


def test_last_layer_probability_equals_stock_generate(traced, stock, tiny_llava):
    prompt_length = tiny_llava.inputs["input_ids"].shape[1]
    generated = stock.sequences[:, prompt_length:]
    np.testing.assert_array_equal(traced.token_ids, generated.numpy())
    for t, logits in enumerate(stock.logits):
        expected = torch.softmax(logits.float(), -1)[0, generated[0, t]]
        np.testing.assert_allclose(traced.token_probs[0, t, -1], expected.item(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("readout, reduction", [("normed", "sum"), ("raw", "mean")])
def test_jsd_and_probabilities_equal_recomputation(tiny_llava, stock, readout, reduction):
    result = trace(tiny_llava.model, tiny_llava.inputs, processor=tiny_llava.processor, max_new_tokens=STEPS, top_k=TOP_K,
                   watch_tokens=WATCH, readout=readout, reduction=reduction)
    logp = _recomputed_logprobs(tiny_llava, stock.sequences, readout)  # shape: (L + 1, 1, steps, vocab)
    jsd = js_divergence(logp[:-1], logp[1:], reduction=reduction)  # shape: (L, 1, steps)
    np.testing.assert_allclose(result.jsd, jsd.permute(1, 2, 0).numpy(), rtol=1e-3, atol=1e-7)
    tokens = torch.as_tensor(result.token_ids[0])
    probs = logp[1:, 0, torch.arange(STEPS), tokens].exp().T  # shape: (steps, L)
    np.testing.assert_allclose(result.token_probs[0], probs.numpy(), rtol=1e-4, atol=1e-6)
    watch = logp[1:, 0][..., result.watch_token_ids].exp().transpose(0, 1)  # shape: (steps, L, W)
    np.testing.assert_allclose(result.watch_probs[0], watch.numpy(), rtol=1e-4, atol=1e-6)


def test_topk_sorted_and_consistent(traced):
    assert (np.diff(traced.topk_probs, axis=-1) <= 0).all()
    assert (traced.topk_probs[..., 0] >= traced.token_probs - 1e-6).all()
    # greedy: the emitted token is the last layer's top-1
    np.testing.assert_array_equal(traced.topk_ids[:, :, -1, 0], traced.token_ids)
    top1 = traced.topk_ids[..., 0]
    np.testing.assert_array_equal(traced.top1_changed[:, :, 1:], top1[:, :, 1:] != top1[:, :, :-1])


def test_watch_tokens(traced, tiny_llava):
    tokenizer = tiny_llava.processor.tokenizer
    assert traced.watch_tokens == WATCH
    assert traced.watch_token_ids == [tokenizer.convert_tokens_to_ids(w) for w in WATCH]
    by_id = trace(tiny_llava.model, tiny_llava.inputs, processor=tiny_llava.processor, max_new_tokens=2,
                  watch_tokens=traced.watch_token_ids)
    np.testing.assert_allclose(by_id.watch_probs, traced.watch_probs[:, :2])


def test_include_embeddings(tiny_llava, traced):
    result = trace(tiny_llava.model, tiny_llava.inputs, processor=tiny_llava.processor, max_new_tokens=2, top_k=TOP_K,
                   include_embeddings=True)
    assert result.first_layer == 0 and result.token_probs.shape[-1] == result.num_layers + 1
    np.testing.assert_allclose(result.token_probs[:, :, 1:], traced.token_probs[:, :2], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.jsd, traced.jsd[:, :2], rtol=1e-4, atol=1e-8)


def test_save_load_round_trip(traced, tmp_path):
    traced.save(tmp_path / "run")
    loaded = Trace.load(tmp_path / "run")
    for name in Trace._ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(traced, name), err_msg=name)
    assert loaded.tokens == traced.tokens and loaded.texts == traced.texts
    assert loaded.watch_tokens == traced.watch_tokens and loaded.watch_token_ids == traced.watch_token_ids
    assert loaded.meta == traced.meta
    with pytest.raises(FileNotFoundError, match="not a trace folder"):
        Trace.load(tmp_path)


def test_bad_top_k(tiny_llava):
    vocab = ModelAnatomy.from_model(tiny_llava.model).vocab_size
    for k in (0, vocab + 1):
        with pytest.raises(ValueError, match="top_k"):
            trace(tiny_llava.model, tiny_llava.inputs, processor=tiny_llava.processor, max_new_tokens=1, top_k=k)


def test_no_vocab_sized_array(traced, tiny_llava):
    vocab = ModelAnatomy.from_model(tiny_llava.model).vocab_size
    for name in Trace._ARRAYS:
        array = getattr(traced, name)
        assert vocab not in array.shape, f"{name} {array.shape} has a vocabulary-sized axis"
