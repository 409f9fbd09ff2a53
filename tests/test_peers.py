"""DoLa, DeCo and VCD inside generate(): equal to a slow reference that recomputes every step from scratch,
batched rows equal single rows, processors compose, and bad options are one-line errors."""

import numpy as np
import pytest
import torch
from PIL import Image

import lvlm_skip
from lvlm_skip.config import DOLA_REPETITION_PENALTY
from lvlm_skip.peers.deco import deco_correct, deco_default_window
from lvlm_skip.peers.dola import dola_candidate_layers, dola_contrast
from lvlm_skip.peers.vcd import vcd_contrast
from lvlm_skip.anatomy import ModelAnatomy
from lvlm_skip.inputs.models import chat_prompt
from lvlm_skip.peers import noised_images

from batches import left_padded_batch
from references import greedy_append, grown_to
from tiny_models import make_llama, make_llava

NUM_LAYERS = 8
STEPS = 6


@pytest.fixture(scope="module")
def llava():
    model, processor = make_llava(NUM_LAYERS, hidden=64, intermediate=128, seed=3, dtype=torch.float64)
    images = [Image.fromarray((np.random.RandomState(s).rand(40, 40, 3) * 255).astype("uint8")) for s in (0, 1)]
    prompts = [chat_prompt(processor, "describe this image ."), chat_prompt(processor, "what color is the cup ?")]
    inputs = processor(images=images, text=prompts, return_tensors="pt", padding=True)
    inputs["pixel_values"] = inputs["pixel_values"].double()
    return model, dict(inputs)


@pytest.fixture(scope="module")
def llama():
    # larger random weights than the default init, so the early layers' readouts are not uniform and
    # the peers' contrasts change tokens (a reference test on a model where they never act proves little)
    return make_llama(NUM_LAYERS, dtype=torch.float64, initializer_range=0.3)


GREEDY = dict(max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False)


@torch.no_grad()
def slow_reference(model, inputs, variant, options, steps=STEPS, suppress=(), prefix_lm=False):
    """Greedy tokens recomputed from the whole prefix at every step, no cache, with the peer's contrast.

    ``prefix_lm`` (PaliGemma): generated positions get ``token_type_ids = 1`` so they attend causally, as in generate.
    """
    anatomy = ModelAnatomy.from_model(model)
    L = anatomy.num_layers
    sequence, mask = inputs["input_ids"], inputs["attention_mask"]
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    tied = anatomy.tied_embeddings
    tokens = []
    for _ in range(steps):
        if "image_grid_thw" not in extra:  # the Qwen family computes its M-RoPE positions from the whole sequence
            extra["position_ids"] = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as generate sets them
        extra = grown_to(extra, sequence.shape[1])  # Mllama's cross-attention mask, Qwen's token types
        if prefix_lm:
            prompt_len = inputs["input_ids"].shape[1]
            extra["token_type_ids"] = (torch.arange(mask.shape[1]) >= prompt_len).long().expand_as(mask)
        out = model(input_ids=sequence, attention_mask=mask, use_cache=False, output_hidden_states=True, **extra)
        final, hidden = out.logits[:, -1], list(out.hidden_states)  # hidden[j] = h_j, the last one after the norm
        if len(hidden) < L + 1:  # Mllama without an image passes over its cross-attention layers: the identity
            for j in sorted(anatomy.cross_attention_layers):
                hidden.insert(j, hidden[j - 1])
        assert len(hidden) == L + 1
        if variant == "dola":
            layers = dola_candidate_layers(L, options.get("layers", "high"), tie_word_embeddings=tied)
            premature = torch.stack([anatomy.lm_head(hidden[j][:, -1]) for j in layers])
            logits, _ = dola_contrast(final, premature, relative_top=options.get("relative_top", 0.1))
        elif variant == "deco":
            layers = options.get("layers") or deco_default_window(L)
            window = torch.stack([anatomy.unembed(anatomy.final_norm(hidden[j][:, -1])) for j in layers])
            logits, _ = deco_correct(final, window, alpha=options.get("alpha", 0.6))
        else:
            noised = dict(extra, pixel_values=noised_images(extra["pixel_values"], 500, options.get("seed", 0)))
            other = model(input_ids=sequence, attention_mask=mask, use_cache=False, **noised).logits[:, -1]
            logits = vcd_contrast(final, other, alpha=options.get("alpha", 1.0), beta=options.get("beta", 0.1))
        token, sequence, mask = greedy_append(model, logits, sequence, mask, suppress)
        tokens.append(token)
    return torch.stack(tokens, dim=1)


def generate(model, inputs, variant, options, **kwargs):
    with lvlm_skip.skipping(model, variant=variant, **options) as run:
        out = model.generate(**inputs, **GREEDY, **kwargs)
    return out[:, inputs["input_ids"].shape[1]:], run.report


@pytest.mark.parametrize(
    "variant,options",
    [("dola", {}), ("dola", {"layers": "low"}), ("deco", {}), ("deco", {"layers": [2, 3, 4], "alpha": 2.0}),
     ("vcd", {}), ("vcd", {"alpha": 3.0, "beta": 0.0})],
)
def test_peer_equals_slow_reference_llava_batch(llava, variant, options):
    model, inputs = llava
    image_token = model.config.image_token_id
    new, report = generate(model, inputs, variant, options, suppress_tokens=[image_token])
    reference = slow_reference(model, inputs, variant, options, suppress=(image_token,))
    assert torch.equal(new, reference)
    assert report.num_steps == STEPS and report.mean_layers_skipped() == 0.0
    if variant != "vcd":
        assert (report.chosen_layer >= 0).all()


@pytest.mark.parametrize("variant,options", [("dola", {"layers": "low"}), ("dola", {}), ("deco", {"alpha": 2.0})])
def test_peer_equals_slow_reference_llama_left_padded(llama, variant, options):
    batch = left_padded_batch()
    new, _ = generate(llama, batch, variant, options)
    assert torch.equal(new, slow_reference(llama, batch, variant, options))


def test_peers_change_the_text_here(llama):
    """The references above would prove little if the peers never changed a token on these models."""
    batch = left_padded_batch()
    stock = llama.generate(**batch, **GREEDY)[:, batch["input_ids"].shape[1]:]
    cases = [("dola", {"layers": "low"}), ("dola", {}), ("deco", {"alpha": 2.0})]
    changed = [not torch.equal(generate(llama, batch, v, o)[0], stock) for v, o in cases]
    assert all(changed)


@pytest.mark.parametrize("variant,options", [("dola", {"layers": "low"}), ("deco", {"alpha": 2.0}), ("vcd", {"alpha": 3.0})])
def test_batched_rows_equal_single_rows(llava, variant, options):
    model, inputs = llava
    batched, _ = generate(model, inputs, variant, options)
    for row in range(2):
        single = {k: v[row : row + 1] for k, v in inputs.items()}
        width = int(single["attention_mask"].sum())  # drop the row's left padding
        single["input_ids"] = single["input_ids"][:, -width:]
        single["attention_mask"] = single["attention_mask"][:, -width:]
        alone, _ = generate(model, single, variant, options)
        assert torch.equal(alone[0], batched[row]), (variant, row)


def test_image_noise_depends_on_the_image_and_seed_only(llava):
    _, inputs = llava
    pixels = inputs["pixel_values"]
    both = noised_images(pixels, 500, seed=7)
    assert torch.equal(both[1:], noised_images(pixels[1:], 500, seed=7))
    assert not torch.equal(both, noised_images(pixels, 500, seed=8))
    assert both.dtype == pixels.dtype and not torch.equal(both, pixels)


def test_processors_apply_after_the_contrast(llama):
    """A suppressed token never appears and a repetition penalty acts on the contrasted logits (as 4.x DoLa)."""
    batch = left_padded_batch()
    plain, _ = generate(llama, batch, "dola", {"layers": "low"})
    banned = int(plain[0, 0])
    new, _ = generate(llama, batch, "dola", {"layers": "low"}, suppress_tokens=[banned])
    assert banned not in new.flatten().tolist()
    penalised, _ = generate(llama, batch, "dola", {"layers": "low"}, repetition_penalty=DOLA_REPETITION_PENALTY)
    assert penalised.shape == plain.shape


@pytest.mark.parametrize(
    "variant,options,error,match",
    [
        ("dola", {"layers": "middle"}, ValueError, "layers"),
        ("dola", {"relative_top": 2.0}, ValueError, "relative_top"),
        ("deco", {"layers": [3, NUM_LAYERS]}, ValueError, "precede the last layer"),
        ("vcd", {"alpha": -1.0}, ValueError, "alpha"),
        ("vcd", {"gamma": 1}, TypeError, "vcd: unknown option"),
        ("dola", {"mode": "online"}, TypeError, "dola takes no mode"),
        ("deco", {"mode": "static"}, TypeError, "deco takes no mode"),
        ("vcd", {"profile": "profile.json"}, TypeError, "vcd takes no layer profile"),
    ],
)
def test_bad_peer_options(llama, variant, options, error, match):
    with pytest.raises(error, match=match):
        lvlm_skip.wrap(llama, variant=variant, **options)
        llama.generate(**left_padded_batch(), max_new_tokens=1)
    if lvlm_skip.is_wrapped(llama):
        lvlm_skip.unwrap(llama)
    assert "forward" not in llama.__dict__ and "generate" not in llama.__dict__


def test_unwrap_restores_forward_and_beam_search_is_refused(llama):
    batch = left_padded_batch()
    before = llama.generate(**batch, **GREEDY)
    hooks = [(len(layer._forward_hooks), len(layer._forward_pre_hooks)) for layer in llama.model.layers]
    lvlm_skip.wrap(llama, variant="dola")
    with pytest.raises(ValueError, match="beam search"):
        llama.generate(**batch, max_new_tokens=2, num_beams=2)
    lvlm_skip.unwrap(llama)
    assert "forward" not in llama.__dict__
    # transformers keeps hooks of its own (output_hidden_states): only ours must be gone
    assert [(len(layer._forward_hooks), len(layer._forward_pre_hooks)) for layer in llama.model.layers] == hooks
    assert torch.equal(llama.generate(**batch, **GREEDY), before)
