"""The architecture matrix: tiny random models of transformers' image-text-to-text classes, batch 1, float64,
text-only prompts (Mllama's with an image, for its cross-attention layers). Per served class: stock generate
runs, ``none`` equals stock, the static ``positions="all"`` skip equals the model with that layer deleted, online
skip2 / skip3 (loose thresholds, checked to skip) equal a cache-free replay, DoLa, DeCo and VCD (with a hand-built
image) equal their slow references, trace reads out L layers, the last layer's readout equals the model's logits,
projected K/V equal each layer's own, and unwrap restores the model; then a left-padded batch of 2. Refused classes
fail at wrap in one line."""

from __future__ import annotations

import pytest
import torch

import lvlm_skip
from lvlm_skip.anatomy import ModelAnatomy, UnsupportedModelError
from lvlm_skip.readout import stack_layer_logits
from references import deleted_layers_model, slow_reference_tokens
from tiny_models import LOOSE
from vlm_zoo import L, NOT_BUILT, QWEN_TOKENS, REFUSED, SERVED, SLIDING_WINDOW, build, class_name

STEPS = 5
GREEDY = dict(max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False)
PROMPT = torch.tensor([[1, 5, 6, 7, 8, 9, 10]])
TEXT_INPUTS = {"input_ids": PROMPT, "attention_mask": torch.ones_like(PROMPT)}


def _mllama_image_inputs():
    """Mllama with an image: on a text-only prompt its decoder passes over the cross-attention layers, so the
    matrix would not see them. One 32x32 tile, its image token, and the cross-attention mask the processor gives."""
    from vlm_zoo import MLLAMA_IMAGE_TOKEN, MLLAMA_TILES

    torch.manual_seed(0)
    ids = torch.tensor([[1, MLLAMA_IMAGE_TOKEN, 5, 6, 7, 8, 9]])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "pixel_values": torch.randn(1, 1, MLLAMA_TILES, 3, 32, 32, dtype=torch.float64),
            "aspect_ratio_ids": torch.tensor([[1]]), "aspect_ratio_mask": torch.ones(1, 1, MLLAMA_TILES, dtype=torch.long),
            "cross_attention_mask": torch.ones(1, ids.shape[1], 1, MLLAMA_TILES, dtype=torch.long)}


def inputs_for(name: str) -> dict:
    """The batch-1 prompt of a class: text only, except Mllama's (an image, for its cross-attention layers)."""
    return _mllama_image_inputs() if name == "Mllama" else TEXT_INPUTS


@pytest.fixture(scope="module", params=list(SERVED))
def served(request):
    model = build(request.param)
    inputs = inputs_for(request.param)
    with torch.no_grad():
        stock = model.generate(**inputs, **GREEDY)[:, inputs["input_ids"].shape[1]:]
        logits = model(**inputs).logits
    assert stock.shape == (1, STEPS)
    return request.param, model, stock, logits


def _generate(model, inputs, **options):
    with lvlm_skip.skipping(model, **options) as run, torch.no_grad():
        out = model.generate(**inputs, **GREEDY)
    return out[:, inputs["input_ids"].shape[1]:], run.report


def test_none_equals_stock(served):
    name, model, stock, _ = served
    inputs = inputs_for(name)
    assert torch.equal(_generate(model, inputs, variant="none")[0], stock)


def test_static_all_positions_equals_deleted_layer(served):
    name, model, _, _ = served
    inputs = inputs_for(name)
    new, report = _generate(model, inputs, variant="layers", layers=[2], positions="all")
    assert report.skipped_layers(0) == [2]
    expected = deleted_layers_model(model, [2]).generate(**inputs, **GREEDY)[:, inputs["input_ids"].shape[1]:]
    assert torch.equal(new, expected)


@pytest.mark.parametrize("variant,extra", [("skip2", {}), ("skip3", {"keep_last": 1})])
def test_online_skip_equals_cache_free_replay(served, variant, extra, record_property):
    name, model, _, _ = served
    inputs = inputs_for(name)
    if variant == "skip2" and name in SLIDING_WINDOW:
        with pytest.raises(UnsupportedModelError, match="sliding-window") as error:
            lvlm_skip.wrap(model, variant=variant, mode="online", detection=LOOSE)
        assert "\n" not in str(error.value) and not lvlm_skip.is_wrapped(model)
        record_property("cell", "refused at wrap (sliding window)")  # recipes.architecture_matrix's table cell
        return
    new, report = _generate(model, inputs, variant=variant, mode="online", detection=LOOSE, candidates=0, **extra)
    assert report.skipped.any(), "no layer skipped: the case would prove nothing"
    assert torch.equal(new, slow_reference_tokens(model, inputs, report, STEPS, static=False,
                                                      prefix_lm=name == "PaliGemma"))


def test_trace_reads_out_every_layer(served):
    name, model, stock, _ = served
    inputs = inputs_for(name)
    result = lvlm_skip.trace(model, inputs, max_new_tokens=STEPS)
    steps = int(result.lengths[0])
    steps -= int(result.token_ids[0, steps - 1] == model.generation_config.eos_token_id)  # stock suppresses EOS
    assert result.jsd.shape[-1] == L and result.token_probs.shape[-1] == L and result.meta["num_layers"] == L
    assert torch.equal(torch.as_tensor(result.token_ids)[:, :steps], stock[:, :steps])


def test_last_layer_readout_equals_model_logits(served):
    """The lens's own final transformation (norm, head, Gemma's logit soft-capping) gives the model's logits."""
    name, model, _, logits = served
    inputs = inputs_for(name)
    anatomy = ModelAnatomy.from_model(model)
    states = {}
    def keep(module, args, output):
        states["h"] = output[0] if isinstance(output, tuple) else output  # returns None: output unchanged

    handle = anatomy.layers[-1].register_forward_hook(keep)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    with torch.no_grad():
        readout = stack_layer_logits(anatomy, states["h"][None])[0]
        raw = stack_layer_logits(anatomy, states["h"][None], readout="raw")[0]
    torch.testing.assert_close(readout, logits)
    torch.testing.assert_close(raw, logits)


def test_projected_kv_equals_each_layers_own(served, record_property):
    """``kv_fill="project"`` writes, at a skipped position, the K/V the layer itself would write for that input:
    checked against the cache of a stock forward, layer by layer (Cohere 2's full-attention layers use no rotary)."""
    from transformers import DynamicCache

    from lvlm_skip.anatomy import project_kv_into_cache_

    name, model, _, _ = served
    inputs = inputs_for(name)
    anatomy = ModelAnatomy.from_model(model)
    seen = {}

    def grab(module, args, kwargs, _output):
        seen[module] = (args[0] if args else kwargs["hidden_states"], kwargs)

    handles = [layer.register_forward_hook(grab, with_kwargs=True) for layer in anatomy.layers]
    stock = DynamicCache(config=model.config.get_text_config())
    try:
        with torch.no_grad():
            model(**inputs, **{anatomy.model_cache_argument: stock}, use_cache=True)
    finally:
        for handle in handles:
            handle.remove()
    for j, layer in enumerate(anatomy.layers):
        if j + 1 in anatomy.cross_attention_layers:
            continue  # Mllama: its cache holds the image's K/V, which a skipped step does not write (test_skipping)
        hidden, kwargs = seen[layer]
        projected = DynamicCache(config=model.config.get_text_config())
        with torch.no_grad():
            project_kv_into_cache_(layer, hidden, anatomy.position_embeddings(kwargs), projected)
        torch.testing.assert_close(projected.layers[j].keys, stock.layers[j].keys, msg=f"layer {j + 1} keys")
        torch.testing.assert_close(projected.layers[j].values, stock.layers[j].values, msg=f"layer {j + 1} values")
    if anatomy.cross_attention_layers:
        record_property("cell", "pass (self-attention layers; cross-attention writes none)")


def test_speculative_equals_stock(served, record_property):
    """Speculative decoding with a draft that skips layers 5 and 6 gives the stock tokens (and rolls its caches back);
    refused in one line on sliding-window models, whose caches cannot be rolled back."""
    name, model, _, _ = served
    inputs = inputs_for(name)
    options = dict(variant="speculative", draft="layers", layers=[5, 6], k=3)
    if name in SLIDING_WINDOW:
        with pytest.raises(UnsupportedModelError, match="sliding-window") as error:
            lvlm_skip.wrap(model, **options)
        assert "\n" not in str(error.value) and not lvlm_skip.is_wrapped(model)
        record_property("cell", "refused at wrap (sliding window)")
        return
    generate = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False)
    with torch.no_grad():
        stock = model.generate(**inputs, **generate)
    with lvlm_skip.skipping(model, **options) as run, torch.no_grad():
        assert torch.equal(model.generate(**inputs, **generate), stock)
    assert sum(run.report.drafted) > 0


def test_unwrap_restores(served):
    name, model, stock, logits = served
    inputs = inputs_for(name)
    forward = model.forward
    lvlm_skip.wrap(model, variant="layers", layers=[2])
    lvlm_skip.unwrap(model)
    assert "generate" not in model.__dict__ and model.forward == forward
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, logits)
        assert torch.equal(model.generate(**inputs, **GREEDY)[:, inputs["input_ids"].shape[1]:], stock)


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
    inputs = inputs_for(name)
    new, report = peer_generate(model, inputs, variant, options)
    assert torch.equal(new, slow_reference(model, inputs, variant, options, prefix_lm=name == "PaliGemma"))
    assert (report.chosen_layer >= 0).all()


PADDED = {"input_ids": torch.tensor([[1, 5, 6, 7, 8, 9, 10], [0, 0, 0, 1, 11, 12, 13]]),
          "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]])}


@pytest.mark.parametrize("case", ["none", "static-all-deleted", "online-skip3-replay"])
def test_left_padded_batch_of_two(served, case, record_property):
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
    if name == "Mllama":
        record_property("cell", "pass (text only: cross-attention passed over)")


@pytest.mark.parametrize("variant", ["dola", "deco"])
def test_text_peers_on_a_left_padded_batch_of_two(served, variant, record_property):
    from test_peers import generate as peer_generate
    from test_peers import slow_reference

    name, model, _, _ = served
    if name == "PaliGemma":
        pytest.skip("no reference: stock PaliGemma generate on a left-padded batch differs from its own cache-free "
                    "recompute")
    new, _ = peer_generate(model, PADDED, variant, {})
    assert torch.equal(new, slow_reference(model, PADDED, variant, {}))
    if name == "Mllama":
        record_property("cell", "pass (text only: cross-attention passed over)")


def _pixels(*shape):
    torch.manual_seed(0)
    return torch.randn(*shape, dtype=torch.float64)


def _image_prompt(count, token=3, before=(), after=()):  # BOS, the image's placeholder tokens, then text
    return torch.tensor([[1, *before, *[token] * count, *after, 5, 6, 7]])


def _tiles():  # Idefics2/3, SmolVLM: (batch, images, 3, H, W) and a pixel mask
    return {"pixel_values": _pixels(1, 1, 3, 32, 32), "pixel_attention_mask": torch.ones(1, 1, 32, 32, dtype=torch.long)}


def _anyres():  # LLaVA-NeXT / OneVision with image_grid_pinpoints [[32, 32]]: the base image and one tile
    return {"pixel_values": _pixels(1, 2, 3, 32, 32), "image_sizes": torch.tensor([[32, 32]])}


def _qwen():  # a 4x4-patch image (patch 2, no merge): 16 flattened patches of 3 x 2 x 2 between vision start / end
    ids = _image_prompt(16, before=[QWEN_TOKENS["vision_start_token_id"]], after=[QWEN_TOKENS["vision_end_token_id"]])
    return {"input_ids": ids, "pixel_values": _pixels(16, 12), "image_grid_thw": torch.tensor([[1, 4, 4]]),
            "mm_token_type_ids": (ids == QWEN_TOKENS["image_token_id"]).long()}  # as the processor returns them


def _paligemma():  # image tokens first, then BOS and the prefix; token type 0 on the whole prefix
    ids = torch.tensor([[3] * 16 + [1, 5, 6, 7]])
    return {"input_ids": ids, "pixel_values": _pixels(1, 3, 32, 32), "token_type_ids": torch.zeros_like(ids)}


def _image(count, **more):
    return lambda: {"input_ids": _image_prompt(count), "pixel_values": _pixels(1, 3, 32, 32), **more}


#: VCD's inputs built by hand, per class: image token id and ``() -> inputs`` (the prompt and the image inputs).
#: Mllama's image enters through cross-attention layers, not as tokens: VCD's second pass is the same prompt with
#: the noised ``pixel_values`` through the vision tower and the cross-attention (the same contrast as on LLaVA: the
#: model reading a noised image).
VCD_IMAGES = {
    "Llava": (3, _image(16)),
    "VipLlava": (3, _image(16)),
    "Gemma3": (3, _image(4)),
    "LlavaNext": (3, lambda: {"input_ids": _image_prompt(36), **_anyres()}),
    "LlavaOnevision": (3, lambda: {"input_ids": _image_prompt(36), **_anyres()}),
    "AyaVision": (3, _image(4)),
    "InternVL": (3, _image(4)),
    "Idefics2": (3, lambda: {"input_ids": _image_prompt(4), **_tiles()}),
    "Idefics3": (3, lambda: {"input_ids": _image_prompt(4), **_tiles()}),
    "SmolVLM": (3, lambda: {"input_ids": _image_prompt(4), **_tiles()}),
    "Qwen2VL": (3, _qwen),
    "Qwen2_5_VL": (3, _qwen),
    "Qwen3VL": (3, _qwen),
    # Pixtral's 4x4 patches (no merge) are 16 image tokens; the processor's row-break / end tokens are plain text
    "Mistral3": (3, _image(16, image_sizes=torch.tensor([[32, 32]]))),
    "PaliGemma": (3, _paligemma),
    # Chameleon's VQ encoder turns a 16x16 image into 16 image-code tokens (vlm_zoo.CHAMELEON_CODES)
    "Chameleon": (3, lambda: {"input_ids": _image_prompt(16), "pixel_values": _pixels(1, 3, 16, 16)}),
    "Mllama": (3, _mllama_image_inputs),
}


def test_vcd_covers_every_served_class():
    assert set(VCD_IMAGES) == set(SERVED), "a served class without a VCD check"


@pytest.mark.parametrize("name", list(VCD_IMAGES))
def test_vcd_with_an_image_equals_slow_reference(name):
    """VCD with a real image on each class equals the slow reference, and its noised pass changes the answer (a
    check on a contrast that never acts proves little)."""
    from test_peers import generate as peer_generate
    from test_peers import slow_reference

    token, build_inputs = VCD_IMAGES[name]
    model = build(name)
    inputs = build_inputs()
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    prefix_lm = name == "PaliGemma"
    answers = []
    for options in ({}, {"alpha": 3.0, "beta": 0.0}):
        new, _ = peer_generate(model, inputs, "vcd", options, suppress_tokens=[token])
        assert torch.equal(new, slow_reference(model, inputs, "vcd", options, suppress=(token,), prefix_lm=prefix_lm))
        answers.append(new)
    with torch.no_grad():
        stock = model.generate(**inputs, **dict(GREEDY, max_new_tokens=6, min_new_tokens=6),
                               suppress_tokens=[token])[:, inputs["input_ids"].shape[1]:]
    assert any(not torch.equal(answer, stock) for answer in answers)


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


def test_a_skipped_cross_attention_layer_keeps_the_images_cache():
    """Mllama's cross-attention layer caches the image's K/V once, at the prompt: skipping it at decoding steps
    writes nothing there (no text K/V, no deferred projection), so its cache after generate is the stock one."""
    model = build("Mllama")
    inputs = _mllama_image_inputs()
    (cross,) = ModelAnatomy.from_model(model).cross_attention_layers
    options = dict(max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False, return_dict_in_generate=True)
    with torch.no_grad():
        stock = model.generate(**inputs, **options).past_key_values.layers[cross - 1]
        for kv_fill in ("project", "recompute"):
            with lvlm_skip.skipping(model, variant="layers", layers=[cross], kv_fill=kv_fill) as run:
                skipped = model.generate(**inputs, **options).past_key_values.layers[cross - 1]
            assert run.report.skipped[1:, 0, cross - 1].all()  # every decoding step skipped it
            assert torch.equal(skipped.keys, stock.keys) and torch.equal(skipped.values, stock.values)


@pytest.mark.parametrize("prompt", ["image", "text"])
def test_mllama_static_measured_skip_equals_replay(prompt):
    """Static skip3 that measures its layers on the prompt (calibration) on Mllama, with an image and without one
    (then the calibration passes over the cross-attention layers, as the decoder does): it skips, and equals the
    cache-free replay of its decisions."""
    model = build("Mllama")
    inputs = _mllama_image_inputs() if prompt == "image" else TEXT_INPUTS
    with lvlm_skip.skipping(model, variant="skip3", keep_last=1, detection=LOOSE) as run, torch.no_grad():
        new = model.generate(**inputs, **GREEDY)[:, inputs["input_ids"].shape[1]:]
    assert run.report.skipped.any(), "no layer skipped: the case would prove nothing"
    assert torch.equal(new, slow_reference_tokens(model, inputs, run.report, STEPS, static=False))
