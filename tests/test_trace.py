"""trace() on the tiny LLaVA against the stock generate and a from-scratch recomputation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lvlm_skip import Trace, trace
from lvlm_skip.errors import InputError
from lvlm_skip.tracing import trace_readouts
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
    return torch.log_softmax(logits[:, :, positions].double(), dim=-1)


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


@pytest.mark.parametrize("readout, reduction", [("normed", "sum"), ("raw", "paper")])
def test_jsd_and_probabilities_equal_recomputation(tiny_llava, stock, readout, reduction):
    result = trace(tiny_llava.model, tiny_llava.inputs, processor=tiny_llava.processor, max_new_tokens=STEPS, top_k=TOP_K,
                   watch_tokens=WATCH, readout=readout, reduction=reduction)
    assert result.meta["readout"] == readout and result.meta["reduction"] == reduction
    assert result.jsd.dtype == (np.float64 if reduction == "paper" else np.float32)
    logp = _recomputed_logprobs(tiny_llava, stock.sequences, readout)  # shape: (L + 1, 1, steps, vocab)
    jsd = js_divergence(logp[:-1], logp[1:], reduction=reduction)  # shape: (L, 1, steps)
    np.testing.assert_allclose(result.jsd, jsd.permute(1, 2, 0).numpy(), rtol=1e-3, atol=1e-3 * float(jsd.max()))
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


def _expected_competitors(logp_step: torch.Tensor, token: int, start: int, cap: int) -> list[int]:
    """From scratch: distinct top-1 tokens of layers ``start..L`` (``logp_step`` rows ``j = 1..L``), emitted first."""
    window = logp_step[start - 1:]
    top1 = sorted(set(window.argmax(-1).tolist()))
    peak = {i: window[:, i].max().item() for i in top1}
    return sorted(top1, key=lambda i: (i != token, -peak[i]))[:cap]


@pytest.mark.parametrize("window", [None, 3])
def test_competitors_are_the_late_window_top1_tokens(tiny_llava, stock, window):
    cap = 3
    result = trace(tiny_llava.model, tiny_llava.inputs, processor=tiny_llava.processor, max_new_tokens=STEPS,
                   competitor_window=window, max_competitors=cap)
    L = result.num_layers
    assert result.competitor_ids.shape == (1, STEPS, cap) and result.competitor_probs.shape == (1, STEPS, L, cap)
    critical = result.critical[0]
    expected_start = np.where(critical > 0, critical, round(20 / 32 * L)) if window is None else np.full(STEPS, window)
    np.testing.assert_array_equal(result.window_start[0], expected_start)
    logp = _recomputed_logprobs(tiny_llava, stock.sequences)[1:, 0]  # shape: (L, steps, vocab)
    for t in range(STEPS):
        ids = [i for i in result.competitor_ids[0, t].tolist() if i >= 0]
        assert ids == _expected_competitors(logp[:, t], int(result.token_ids[0, t]), int(expected_start[t]), cap), t
        np.testing.assert_allclose(result.competitor_probs[0, t, :, : len(ids)], logp[:, t, ids].exp().numpy(), rtol=1e-4, atol=1e-7)
        assert np.isnan(result.competitor_probs[0, t, :, len(ids):]).all()
        assert all(result.token_name(i) == tiny_llava.processor.tokenizer.decode([i]) for i in ids)
    assert result.meta["competitor_window"] == ("critical" if window is None else window)


def test_hidden_final_is_transformers_last_hidden_state(traced, tiny_llava, stock):
    with torch.no_grad():
        out = tiny_llava.model(input_ids=stock.sequences, attention_mask=torch.ones_like(stock.sequences),
                               pixel_values=tiny_llava.inputs["pixel_values"], output_hidden_states=True)
    prompt_length = tiny_llava.inputs["input_ids"].shape[1]
    last = out.hidden_states[-1][0, prompt_length - 1: prompt_length - 1 + STEPS]  # shape: (steps, hidden), post-norm
    assert traced.hidden_final.shape == (1, STEPS, last.shape[-1])
    np.testing.assert_allclose(traced.hidden_final[0].astype(np.float32), last.numpy(), rtol=2e-3, atol=2e-3)


def test_trace_readouts_generates_once_for_several_settings(tiny_llava):
    both = trace_readouts(tiny_llava.model, tiny_llava.inputs, processor=tiny_llava.processor, max_new_tokens=3,
                          settings=[("normed", "sum"), ("raw", "paper")])
    single = trace(tiny_llava.model, tiny_llava.inputs, processor=tiny_llava.processor, max_new_tokens=3, readout="raw",
                   reduction="paper")
    assert [t.meta["readout"] for t in both] == ["normed", "raw"]
    np.testing.assert_array_equal(both[0].token_ids, both[1].token_ids)
    np.testing.assert_allclose(both[1].jsd, single.jsd)
    np.testing.assert_allclose(both[1].competitor_probs, single.competitor_probs)


@pytest.mark.parametrize("bad, match", [({"competitor_window": 0}, "out of range"), ({"max_competitors": 0}, "max_competitors"),
                                        ({"reduction": "mean"}, "'mean' was removed"), ({"readout": "lens"}, "readout")])
def test_bad_options(tiny_llava, bad, match):
    with pytest.raises(ValueError, match=match):
        trace(tiny_llava.model, tiny_llava.inputs, processor=tiny_llava.processor, max_new_tokens=1, **bad)


def test_watch_word_outside_the_vocabulary_is_an_error(tiny_llava):
    with pytest.raises(InputError, match="'camera' is not in the vocabulary.*<unk>"):
        trace(tiny_llava.model, tiny_llava.inputs, processor=tiny_llava.processor, max_new_tokens=1, watch_tokens=["red", "camera"])
