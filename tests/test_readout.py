"""Early-exit readout: last layer == model logits, and the naive double-norm lens is caught."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lvlm_skip.anatomy import ModelAnatomy
from lvlm_skip.readout import layer_logits_from_hidden_states, readout_logits, stack_layer_logits


def _forward(model, inputs):
    with torch.no_grad():
        return model(**inputs, output_hidden_states=True)


def _naive_double_norm(anatomy, hidden_states):
    """The classic lens bug: norm + head on every entry, the already-normed last one included."""
    return torch.stack([anatomy.lm_head(anatomy.final_norm(h)) for h in hidden_states[1:]])


def _with_random_final_norm(model):
    """A copy whose final norm has a non-trivial weight: with the initial all-ones weight RMSNorm is
    nearly idempotent, and a double-normed last layer would differ only by rounding."""
    model = copy.deepcopy(model)
    norm = ModelAnatomy.from_model(model).final_norm
    with torch.no_grad():
        norm.weight.uniform_(0.3, 3.0, generator=torch.Generator().manual_seed(0))
    return model


@pytest.fixture(scope="module", params=["llava", "llama"])
def model_and_output(request, tiny_llava, tiny_llama):
    if request.param == "llava":
        model, inputs = tiny_llava.model, tiny_llava.inputs
    else:
        model, inputs = tiny_llama, {"input_ids": torch.randint(3, 99, (2, 9), generator=torch.Generator().manual_seed(0))}
    model = _with_random_final_norm(model)
    return model, _forward(model, inputs)


def test_last_layer_readout_equals_model_logits(model_and_output):
    model, out = model_and_output
    anatomy = ModelAnatomy.from_model(model)
    logits = layer_logits_from_hidden_states(anatomy, out.hidden_states)
    assert logits.shape == (anatomy.num_layers, *out.logits.shape)
    torch.testing.assert_close(logits[-1], out.logits, rtol=0, atol=1e-5)
    with_embeddings = layer_logits_from_hidden_states(anatomy, out.hidden_states, include_embeddings=True)
    assert with_embeddings.shape[0] == anatomy.num_layers + 1
    torch.testing.assert_close(with_embeddings[1:], logits)


def test_naive_double_norm_lens_is_caught(model_and_output):
    """Proves the equality test above has teeth: norming the last state twice changes the logits."""
    model, out = model_and_output
    anatomy = ModelAnatomy.from_model(model)
    naive = _naive_double_norm(anatomy, out.hidden_states)
    assert (naive[-1] - out.logits).abs().max() > 1e-3
    # and it agrees with the faithful lens everywhere else
    faithful = layer_logits_from_hidden_states(anatomy, out.hidden_states)
    torch.testing.assert_close(naive[:-1], faithful[:-1])


def test_raw_differs_from_normed_except_at_the_last_layer(model_and_output):
    model, out = model_and_output
    anatomy = ModelAnatomy.from_model(model)
    normed = layer_logits_from_hidden_states(anatomy, out.hidden_states, readout="normed")
    raw = layer_logits_from_hidden_states(anatomy, out.hidden_states, readout="raw")
    torch.testing.assert_close(raw[-1], normed[-1])
    for j in range(anatomy.num_layers - 1):
        assert (raw[j] - normed[j]).abs().max() > 1e-3, f"layer {j + 1}"
    with pytest.raises(ValueError, match="readout"):
        layer_logits_from_hidden_states(anatomy, out.hidden_states, readout="lens")
    with pytest.raises(ValueError, match="hidden states"):
        layer_logits_from_hidden_states(anatomy, out.hidden_states[1:])


def test_stack_layer_logits_on_unnormed_states(tiny_llama):
    """Hook-captured states are all un-normed; stack_layer_logits norms the last one in both readouts."""
    tiny_llama = _with_random_final_norm(tiny_llama)
    anatomy = ModelAnatomy.from_model(tiny_llama)
    input_ids = torch.randint(3, 99, (1, 6), generator=torch.Generator().manual_seed(1))
    out = _forward(tiny_llama, {"input_ids": input_ids})
    captured = []
    handle = anatomy.layers[-1].register_forward_hook(lambda m, a, o: captured.append(o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        tiny_llama(input_ids=input_ids)
    handle.remove()
    # shape: (L + 1, batch, seq, hidden), h_0..h_L all un-normed
    states = torch.stack([*out.hidden_states[:-1], captured[0]])
    for readout in ("normed", "raw"):
        full = stack_layer_logits(anatomy, states, readout=readout)
        torch.testing.assert_close(full[-1], out.logits, rtol=0, atol=1e-5)
        rows = torch.tensor([5, 0, 42, 98])
        torch.testing.assert_close(stack_layer_logits(anatomy, states, readout=readout, vocab_rows=rows), full[..., rows])
    torch.testing.assert_close(
        stack_layer_logits(anatomy, states, readout="normed")[1:], layer_logits_from_hidden_states(anatomy, out.hidden_states)
    )


@pytest.mark.parametrize("scale,cap", [(1.0, None), (0.0625, None), (1.0, 0.5), (0.5, 2.0)])
def test_vocab_rows_with_head_bias_scale_and_softcap(scale, cap):
    from torch import nn

    from lvlm_skip.anatomy import ModelAnatomy

    anatomy = ModelAnatomy(model=nn.Module(), decoder=nn.Module(), layers=nn.ModuleList([nn.Identity()]),
                           final_norm=nn.LayerNorm(8), lm_head=nn.Linear(8, 20, bias=True), num_layers=1,
                           hidden_size=8, vocab_size=20, logit_scale=scale, logit_softcap=cap)
    hidden = torch.randn(3, 8)
    rows = torch.tensor([19, 3, 7])
    full = readout_logits(anatomy, hidden)
    torch.testing.assert_close(readout_logits(anatomy, hidden, vocab_rows=rows), full[:, rows])
    expected = anatomy.lm_head(anatomy.final_norm(hidden)) * scale  # the model's own final transformation
    if cap is not None:
        expected = cap * torch.tanh(expected / cap)
    torch.testing.assert_close(full, expected)
    torch.testing.assert_close(readout_logits(anatomy, hidden, model_transform=False),
                               anatomy.lm_head(anatomy.final_norm(hidden)))


def test_masked_tokens_are_the_dtype_minimum_in_full_and_row_readouts():
    """Chameleon sets its image tokens' logits to the dtype's minimum: the lens does the same, on every row subset."""
    from torch import nn

    from lvlm_skip.anatomy import ModelAnatomy

    anatomy = ModelAnatomy(model=nn.Module(), decoder=nn.Module(), layers=nn.ModuleList([nn.Identity()]),
                           final_norm=nn.LayerNorm(8), lm_head=nn.Linear(8, 20), num_layers=1, hidden_size=8,
                           vocab_size=20, masked_tokens=(4, 11))
    hidden = torch.randn(3, 8)
    full = readout_logits(anatomy, hidden)
    assert (full[:, [4, 11]] == torch.finfo(full.dtype).min).all()
    torch.testing.assert_close(full[:, [0, 5]], anatomy.lm_head(anatomy.final_norm(hidden))[:, [0, 5]])
    rows = torch.tensor([11, 0, 4])
    torch.testing.assert_close(readout_logits(anatomy, hidden, vocab_rows=rows), full[:, rows])
    assert (readout_logits(anatomy, hidden, model_transform=False)[:, 4] > torch.finfo(full.dtype).min).all()


class _ScaledLens:
    """A stand-in for a trained lens: the normed readout, its states scaled per layer by ``1 + j / 10``."""

    name = "scaled"

    def head_input(self, anatomy, states, layers):
        scale = torch.tensor([1 + j / 10 for j in layers], dtype=states.dtype).view(-1, *[1] * (states.dim() - 1))
        return anatomy.final_norm(states) * scale


def test_a_lens_object_plugs_into_every_readout(model_and_output, tiny_llama):
    from lvlm_skip.readout import Lens, NormedLens, RawLens, get_lens

    model, out = model_and_output
    anatomy = ModelAnatomy.from_model(model)
    assert isinstance(_ScaledLens(), Lens) and get_lens("raw").name == "raw" and isinstance(get_lens("normed"), NormedLens)
    with pytest.raises(ValueError, match="has to be one of"):
        get_lens("tuned")
    # the named lenses are the strings
    for name, lens in (("normed", NormedLens()), ("raw", RawLens())):
        assert torch.equal(layer_logits_from_hidden_states(anatomy, out.hidden_states, readout=lens),
                           layer_logits_from_hidden_states(anatomy, out.hidden_states, readout=name))
    # a custom lens: layer j's logits are the normed ones times 1 + j / 10 (the head is linear, no bias)
    normed = layer_logits_from_hidden_states(anatomy, out.hidden_states)
    scaled = layer_logits_from_hidden_states(anatomy, out.hidden_states, readout=_ScaledLens())
    L = anatomy.num_layers
    for j in range(1, L):
        torch.testing.assert_close(scaled[j - 1], normed[j - 1] * (1 + j / 10), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scaled[-1], normed[-1])  # layer L is the model's own logits, whatever the lens


def test_trace_takes_a_lens_object(tiny_llama):
    import lvlm_skip

    inputs = {"input_ids": torch.tensor([[5, 9, 14, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    by_name = lvlm_skip.trace(tiny_llama, inputs, max_new_tokens=3, readout="normed")
    by_lens = lvlm_skip.trace(tiny_llama, inputs, max_new_tokens=3, readout=_ScaledLens())
    assert by_lens.meta["readout"] == "scaled" and by_name.meta["readout"] == "normed"
    assert torch.equal(torch.as_tensor(by_lens.token_ids), torch.as_tensor(by_name.token_ids))  # decoding is the model's
    assert not np.allclose(by_lens.jsd, by_name.jsd, equal_nan=True)  # the curves are the lens's
