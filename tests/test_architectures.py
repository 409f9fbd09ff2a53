"""The architecture matrix: tiny random models of transformers' image-text-to-text classes, batch 1, text-only
prompts, float64. Per served class: stock generate runs, ``none`` equals stock, the static ``positions="all"``
skip equals the model with that layer deleted, online skip3 (loose thresholds, checked to skip) equals a
cache-free replay, trace reads out L layers, the last layer's readout equals the model's logits, and unwrap
restores the model. Refused classes fail at wrap in one line."""

from __future__ import annotations

import pytest
import torch

import lvlm_skip
from lvlm_skip.anatomy import ModelAnatomy, UnsupportedModelError
from lvlm_skip.readout import stack_layer_logits
from references import deleted_layers_model, slow_reference_tokens
from tiny_models import LOOSE
from vlm_zoo import L, NOT_BUILT, REFUSED, SERVED, SLIDING_WINDOW, build, class_name

STEPS = 5
GREEDY = dict(max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False)
PROMPT = torch.tensor([[1, 5, 6, 7, 8, 9, 10]])
INPUTS = {"input_ids": PROMPT, "attention_mask": torch.ones_like(PROMPT)}


@pytest.fixture(scope="module", params=list(SERVED))
def served(request):
    model = build(request.param)
    with torch.no_grad():
        stock = model.generate(**INPUTS, **GREEDY)[:, PROMPT.shape[1]:]
        logits = model(**INPUTS).logits
    assert stock.shape == (1, STEPS)
    return request.param, model, stock, logits


def _generate(model, **options):
    with lvlm_skip.skipping(model, **options) as run, torch.no_grad():
        out = model.generate(**INPUTS, **GREEDY)
    return out[:, PROMPT.shape[1]:], run.report


def test_none_equals_stock(served):
    _, model, stock, _ = served
    assert torch.equal(_generate(model, variant="none")[0], stock)


def test_static_all_positions_equals_deleted_layer(served):
    _, model, _, _ = served
    new, report = _generate(model, variant="layers", layers=[2], positions="all")
    assert report.skipped_layers(0) == [2]
    expected = deleted_layers_model(model, [2]).generate(**INPUTS, **GREEDY)[:, PROMPT.shape[1]:]
    assert torch.equal(new, expected)


@pytest.mark.parametrize("variant,extra", [("skip2", {}), ("skip3", {"keep_last": 1})])
def test_online_skip_equals_cache_free_replay(served, variant, extra, record_property):
    name, model, _, _ = served
    if variant == "skip2" and name in SLIDING_WINDOW:
        with pytest.raises(UnsupportedModelError, match="sliding-window") as error:
            lvlm_skip.wrap(model, variant=variant, mode="online", detection=LOOSE)
        assert "\n" not in str(error.value) and not lvlm_skip.is_wrapped(model)
        record_property("cell", "refused at wrap (sliding window)")  # recipes.architecture_matrix's table cell
        return
    new, report = _generate(model, variant=variant, mode="online", detection=LOOSE, candidates=0, **extra)
    assert report.skipped.any(), "no layer skipped: the case would prove nothing"
    assert torch.equal(new, slow_reference_tokens(model, INPUTS, report, STEPS, static=False,
                                                      prefix_lm=name == "PaliGemma"))


def test_trace_reads_out_every_layer(served):
    _, model, stock, _ = served
    result = lvlm_skip.trace(model, INPUTS, max_new_tokens=STEPS)
    steps = int(result.lengths[0])
    steps -= int(result.token_ids[0, steps - 1] == model.generation_config.eos_token_id)  # stock suppresses EOS
    assert result.jsd.shape[-1] == L and result.token_probs.shape[-1] == L and result.meta["num_layers"] == L
    assert torch.equal(torch.as_tensor(result.token_ids)[:, :steps], stock[:, :steps])


def test_last_layer_readout_equals_model_logits(served):
    """The lens's own final transformation (norm, head, Gemma's logit soft-capping) gives the model's logits."""
    _, model, _, logits = served
    anatomy = ModelAnatomy.from_model(model)
    states = {}
    def keep(module, args, output):
        states["h"] = output[0] if isinstance(output, tuple) else output  # returns None: output unchanged

    handle = anatomy.layers[-1].register_forward_hook(keep)
    try:
        with torch.no_grad():
            model(**INPUTS)
    finally:
        handle.remove()
    with torch.no_grad():
        readout = stack_layer_logits(anatomy, states["h"][None])[0]
        raw = stack_layer_logits(anatomy, states["h"][None], readout="raw")[0]
    torch.testing.assert_close(readout, logits)
    torch.testing.assert_close(raw, logits)


def test_projected_kv_equals_each_layers_own(served):
    """``kv_fill="project"`` writes, at a skipped position, the K/V the layer itself would write for that input:
    checked against the cache of a stock forward, layer by layer (Cohere 2's full-attention layers use no rotary)."""
    from transformers import DynamicCache

    from lvlm_skip.anatomy import project_kv_into_cache_

    _, model, _, _ = served
    anatomy = ModelAnatomy.from_model(model)
    seen = {}

    def grab(module, args, kwargs, _output):
        seen[module] = (args[0] if args else kwargs["hidden_states"], kwargs)

    handles = [layer.register_forward_hook(grab, with_kwargs=True) for layer in anatomy.layers]
    stock = DynamicCache(config=model.config.get_text_config())
    try:
        with torch.no_grad():
            model(**INPUTS, **{anatomy.model_cache_argument: stock}, use_cache=True)
    finally:
        for handle in handles:
            handle.remove()
    for j, layer in enumerate(anatomy.layers):
        hidden, kwargs = seen[layer]
        projected = DynamicCache(config=model.config.get_text_config())
        with torch.no_grad():
            project_kv_into_cache_(layer, hidden, anatomy.position_embeddings(kwargs), projected)
        torch.testing.assert_close(projected.layers[j].keys, stock.layers[j].keys, msg=f"layer {j + 1} keys")
        torch.testing.assert_close(projected.layers[j].values, stock.layers[j].values, msg=f"layer {j + 1} values")


def test_unwrap_restores(served):
    _, model, stock, logits = served
    forward = model.forward
    lvlm_skip.wrap(model, variant="layers", layers=[2])
    lvlm_skip.unwrap(model)
    assert "generate" not in model.__dict__ and model.forward == forward
    with torch.no_grad():
        assert torch.equal(model(**INPUTS).logits, logits)
        assert torch.equal(model.generate(**INPUTS, **GREEDY)[:, PROMPT.shape[1]:], stock)


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_in_one_line(name, record_property):
    model = build(name)
    with pytest.raises(UnsupportedModelError) as error:
        lvlm_skip.wrap(model, variant="skip3", mode="online")
    assert "\n" not in str(error.value) and type(model).__name__ in str(error.value)
    assert not lvlm_skip.is_wrapped(model)
    record_property("refusal", str(error.value))  # recipes.architecture_matrix's table row


@pytest.mark.parametrize("variant,options", [("dola", {}), ("deco", {"alpha": 2.0})])
def test_text_peers_equal_slow_reference(served, variant, options):
    """DoLa and DeCo (text-only prompts; VCD needs an image) equal test_peers' cache-free slow reference."""
    from test_peers import generate as peer_generate
    from test_peers import slow_reference

    name, model, _, _ = served
    new, report = peer_generate(model, INPUTS, variant, options)
    assert torch.equal(new, slow_reference(model, INPUTS, variant, options, prefix_lm=name == "PaliGemma"))
    assert (report.chosen_layer >= 0).all()


PADDED = {"input_ids": torch.tensor([[1, 5, 6, 7, 8, 9, 10], [0, 0, 0, 1, 11, 12, 13]]),
          "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]])}


@pytest.mark.parametrize("case", ["none", "static-all-deleted", "online-skip3-replay"])
def test_left_padded_batch_of_two(served, case):
    name, model, _, _ = served
    width = PADDED["input_ids"].shape[1]
    with torch.no_grad():
        stock = model.generate(**PADDED, **GREEDY)[:, width:]
    options = {"none": dict(variant="none"),
               "static-all-deleted": dict(variant="layers", layers=[2], positions="all"),
               "online-skip3-replay": dict(variant="skip3", mode="online", keep_last=1, detection=LOOSE, candidates=0)}[case]
    with lvlm_skip.skipping(model, **options) as run, torch.no_grad():
        new = model.generate(**PADDED, **GREEDY)[:, width:]
    if case == "none":
        expected = stock
    elif case == "static-all-deleted":
        expected = deleted_layers_model(model, [2]).generate(**PADDED, **GREEDY)[:, width:]
    else:
        if name == "PaliGemma":
            pytest.skip("no reference: stock PaliGemma generate on a left-padded batch differs from its own cache-free "
                        "recompute (the unpadded row even differs from batch 1)")
        assert run.report.skipped.any(), "no layer skipped: the case would prove nothing"
        expected = slow_reference_tokens(model, PADDED, run.report, STEPS, static=False)
    assert torch.equal(new, expected)


@pytest.mark.parametrize("variant", ["dola", "deco"])
def test_text_peers_on_a_left_padded_batch_of_two(served, variant):
    from test_peers import generate as peer_generate
    from test_peers import slow_reference

    name, model, _, _ = served
    if name == "PaliGemma":
        pytest.skip("no reference: stock PaliGemma generate on a left-padded batch differs from its own cache-free "
                    "recompute")
    new, _ = peer_generate(model, PADDED, variant, {})
    assert torch.equal(new, slow_reference(model, PADDED, variant, {}))


def _pixels(*shape):
    torch.manual_seed(0)
    return torch.randn(*shape, dtype=torch.float64)


def _tiles():  # Idefics2/3, SmolVLM: (batch, images, 3, H, W) and a pixel mask
    return {"pixel_values": _pixels(1, 1, 3, 32, 32), "pixel_attention_mask": torch.ones(1, 1, 32, 32, dtype=torch.long)}


def _anyres():  # LLaVA-NeXT / OneVision with image_grid_pinpoints [[32, 32]]: the base image and one tile
    return {"pixel_values": _pixels(1, 2, 3, 32, 32), "image_sizes": torch.tensor([[32, 32]])}


#: classes whose image inputs are built by hand here: (image token id, image tokens per 32x32 image, image inputs).
#: Not here: the Qwen family (its image token ids lie outside the tiny vocabulary), Mistral3 (break and end
#: tokens per row), Chameleon (VQ tokens), PaliGemma (its hand-built prompt fails its image-token check).
VCD_IMAGES = {
    "Llava": (3, 16, lambda: {"pixel_values": _pixels(1, 3, 32, 32)}),
    "VipLlava": (3, 16, lambda: {"pixel_values": _pixels(1, 3, 32, 32)}),
    "Gemma3": (3, 4, lambda: {"pixel_values": _pixels(1, 3, 32, 32)}),
    "LlavaNext": (3, 36, _anyres),
    "LlavaOnevision": (3, 36, _anyres),
    "AyaVision": (3, 4, lambda: {"pixel_values": _pixels(1, 3, 32, 32)}),
    "InternVL": (3, 4, lambda: {"pixel_values": _pixels(1, 3, 32, 32)}),
    "Idefics2": (3, 4, _tiles),
    "Idefics3": (3, 4, _tiles),
    "SmolVLM": (3, 4, _tiles),
}


@pytest.mark.parametrize("name", list(VCD_IMAGES))
def test_vcd_with_an_image_equals_slow_reference(name):
    from test_peers import generate as peer_generate
    from test_peers import slow_reference

    token, count, image_inputs = VCD_IMAGES[name]
    model = build(name)
    ids = torch.tensor([[1] + [token] * count + [5, 6, 7]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **image_inputs()}
    for options in ({}, {"alpha": 3.0, "beta": 0.0}):
        new, _ = peer_generate(model, inputs, "vcd", options, suppress_tokens=[token])
        assert torch.equal(new, slow_reference(model, inputs, "vcd", options, suppress=(token,)))


def test_vcd_on_mllama_contrasts_a_noised_image_through_cross_attention():
    """Mllama's image enters through cross-attention layers, not as tokens: VCD's second pass is the same prompt with
    the noised ``pixel_values`` through the vision tower and the cross-attention (the same contrast as on LLaVA:
    the model reading a noised image), and it equals the slow reference."""
    from test_peers import generate as peer_generate
    from test_peers import slow_reference

    from vlm_zoo import _mllama

    torch.manual_seed(0)
    model = _mllama().double().eval()
    config = model.config
    size, tiles = config.vision_config.image_size, config.vision_config.max_num_tiles
    ids = torch.tensor([[1, config.image_token_index, 5, 6, 7]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "pixel_values": torch.randn(1, 1, tiles, 3, size, size, dtype=torch.float64),
              "aspect_ratio_ids": torch.tensor([[1]]), "aspect_ratio_mask": torch.ones(1, 1, tiles, dtype=torch.long),
              "cross_attention_mask": torch.ones(1, ids.shape[1], 1, tiles, dtype=torch.long)}
    token = config.image_token_index
    for options in ({}, {"alpha": 3.0, "beta": 0.0}):
        new, _ = peer_generate(model, inputs, "vcd", options, suppress_tokens=[token])
        assert torch.equal(new, slow_reference(model, inputs, "vcd", options, suppress=(token,)))
    with torch.no_grad():  # the noised pass changes the answer somewhere, or the check proves little
        stock = model.generate(**inputs, **GREEDY, suppress_tokens=[token])[:, ids.shape[1]:]
    assert not torch.equal(peer_generate(model, inputs, "vcd", {"alpha": 3.0, "beta": 0.0},
                                         suppress_tokens=[token])[0], stock)


def test_every_mapped_class_is_served_refused_or_not_built():
    """Every class of transformers' image-text-to-text auto mapping is in exactly one of SERVED, REFUSED and
    NOT_BUILT (each with its reason), and each matrix name builds the class it names: a class that a new release
    adds fails here until it is classified, rather than sitting silently outside the table."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    mapped = set(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.values())
    served = {class_name(n) for n in SERVED}
    refused = {class_name(n) for n in REFUSED}
    assert served <= mapped and refused <= mapped and not served & refused
    assert not (served | refused) & set(NOT_BUILT), "a class both built and listed as not built"
    unclassified = sorted(mapped - served - refused - set(NOT_BUILT))
    assert not unclassified, f"image-text-to-text classes not in the matrix: {unclassified}"
    for name in {**SERVED, **REFUSED}:
        assert hasattr(__import__("transformers"), class_name(name)), name
    from lvlm_skip.anatomy import SUPPORTED_ARCHITECTURES  # what a refusal names as supported

    assert served <= set(SUPPORTED_ARCHITECTURES) and not refused & set(SUPPORTED_ARCHITECTURES)


def test_readme_table_has_every_class_and_column_of_the_matrix():
    """The README's table (generated by recipes.architecture_matrix) names every served and refused class once,
    with the recipe's columns: a class added to the matrix without regenerating the table fails here."""
    from pathlib import Path

    from recipes.architecture_matrix import COLUMNS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    lines = readme[readme.index("| class | stock, none = stock |"):].splitlines()
    header = [c.strip() for c in lines[0].split("|")[2:-1]]
    table = lines[2:lines.index("", 2)] if "" in lines[2:] else lines[2:]
    rows = [line.split("|")[1].strip() for line in table]
    assert header == list(COLUMNS)
    assert sorted(rows) == sorted(class_name(n) for n in {**SERVED, **REFUSED})
