"""Layer-skipping generate(): exactness against independent references, KV-cache policy, drop-in behaviour."""


import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

import lvlm_skip
from lvlm_skip.anatomy import ModelAnatomy
from lvlm_skip.inputs.models import chat_prompt

from batches import left_padded_batch
from references import deleted_layers_model, slow_reference_tokens
from tiny_models import LOOSE, make_llama, make_llava

NUM_LAYERS = 8


@pytest.fixture(scope="module")
def llava():
    model, processor = make_llava(NUM_LAYERS, hidden=64, intermediate=128, seed=1, dtype=torch.float64)
    image = Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype("uint8"))
    inputs = processor(images=image, text=chat_prompt(processor, "describe this image ."), return_tensors="pt")
    inputs["pixel_values"] = inputs["pixel_values"].double()
    return model, processor, inputs


@pytest.fixture(scope="module")
def llama():
    return make_llama(NUM_LAYERS, dtype=torch.float64)


GREEDY = dict(max_new_tokens=8, do_sample=False, min_new_tokens=8)


def image_token(model):
    return model.config.image_token_id


# -- (a) static skip sets == the same model with those layers deleted -----------------------------


@pytest.mark.parametrize("skip", [[3, 4, 5], [1, 2], [6, 7, 8], [2, 5, 7]])
def test_static_skip_equals_deleted_layers_llava(llava, skip):
    model, _, inputs = llava
    reference = deleted_layers_model(model, skip).generate(**inputs, **GREEDY)
    lvlm_skip.wrap(model, variant="layers", layers=skip, positions="all")
    try:
        out = model.generate(**inputs, **GREEDY)
        report = lvlm_skip.last_report(model)
    finally:
        lvlm_skip.unwrap(model)
    assert torch.equal(out, reference)
    assert report.layers_run.tolist() == [NUM_LAYERS - len(skip)] * GREEDY["max_new_tokens"]
    assert report.skipped_layers(3) == skip


def test_static_skip_equals_deleted_layers_llama_left_padded_batch(llama):
    batch = left_padded_batch()
    skip = [4, 5, 6]
    reference = deleted_layers_model(llama, skip).generate(**batch, **GREEDY)
    lvlm_skip.wrap(llama, variant="layers", layers=skip, positions="all")
    try:
        out = llama.generate(**batch, **GREEDY)
    finally:
        lvlm_skip.unwrap(llama)
    assert torch.equal(out, reference)


def test_static_exit_equals_deleted_tail(llava):
    model, _, inputs = llava
    reference = deleted_layers_model(model, [6, 7, 8]).generate(**inputs, **GREEDY)
    lvlm_skip.wrap(model, variant="exit", exit_layer=5, positions="all")
    try:
        out = model.generate(**inputs, **GREEDY)
        report = lvlm_skip.last_report(model)
    finally:
        lvlm_skip.unwrap(model)
    assert torch.equal(out, reference)
    assert set(report.exit_layer.flatten().tolist()) == {5}


@pytest.mark.parametrize("positions", ["generated", "all"])
def test_static_calibrated_skip_matches_reference_per_row(llama, positions):
    """Calibrated per-row sets: "all" equals the rows' deleted layers everywhere, "generated" a cache-free replay
    that skips only at the positions predicting generated tokens (the prompt's last one and the generated ones)."""
    batch = left_padded_batch()
    lvlm_skip.wrap(llama, variant="skip3", mode="static", keep_last=2, detection=LOOSE, positions=positions)
    try:
        out = llama.generate(**batch, **GREEDY)
        report = lvlm_skip.last_report(llama)
    finally:
        lvlm_skip.unwrap(llama)
    assert len(report.calibration) == 3
    assert report.skipped.any(), "the loose thresholds should calibrate a non-empty skip3 set"
    # per-row sets are constant over the steps
    assert (report.skipped == report.skipped[0]).all()
    new = out[:, batch["input_ids"].shape[1]:]
    reference = slow_reference_tokens(llama, batch, report, GREEDY["max_new_tokens"], static=positions == "all")
    assert torch.equal(new, reference)


@pytest.mark.parametrize("skip", [[3, 4, 5], [1, 2], [2, 5, 7]])
def test_static_generated_positions_equal_cache_free_replay(llava, skip):
    """positions="generated": the prompt (image included) runs every layer, decoding positions skip."""
    model, _, inputs = llava
    with lvlm_skip.skipping(model, variant="layers", layers=skip) as run:
        out = model.generate(**inputs, **GREEDY, suppress_tokens=[image_token(model)])
    report = run.report
    assert report.config.positions == "generated" and report.skipped_layers(0) == skip
    new = out[:, inputs["input_ids"].shape[1]:]
    reference = slow_reference_tokens(model, inputs, report, GREEDY["max_new_tokens"], static=False,
                                      suppress=(image_token(model),))
    assert torch.equal(new, reference)
    # and it is not the deleted-layers model: the prompt was read by every layer
    deleted = deleted_layers_model(model, skip).generate(**inputs, **GREEDY, suppress_tokens=[image_token(model)])
    assert not torch.equal(out, deleted)


# -- (b) online mode == a slow no-cache reference applying the same per-step decisions ---------------


ONLINE_CASES = [
    # (variant, options, candidates); skip1 without a given resume layer measures it at step 0
    ("skip1", dict(mutation_layers=(7,)), 0),
    ("skip1", dict(mutation_layers=(7,)), 16),
    ("skip1", dict(detection=dict(LOOSE, min_mutation_layer=6)), 0),  # measured m deeper than c + 1
    ("skip1", dict(detection=dict(LOOSE, min_mutation_layer=6)), 16),
    ("skip1", dict(mutation_layers=(7,), decide="step"), 0),
    ("skip1", dict(mutation_layers=(7,), decide="step"), 16),
    ("skip2", dict(), 0),
    ("skip2", dict(), 16),
    ("skip3", dict(keep_last=2), 0),
    ("skip3", dict(keep_last=2), 16),
    ("skip3", dict(keep_last=2, decide="step"), 0),
    ("skip3", dict(keep_last=2, decide="step"), 16),
    ("exit", dict(), 0),
    ("exit", dict(), 16),
]


@pytest.mark.parametrize("variant,options,candidates", ONLINE_CASES)
def test_online_equals_slow_reference_llava(llava, variant, options, candidates):
    model, _, inputs = llava
    options = dict(options)
    detection = options.pop("detection", LOOSE)
    lvlm_skip.wrap(model, variant=variant, mode="online", detection=detection, candidates=candidates, **options)
    try:
        out = model.generate(**inputs, **GREEDY, suppress_tokens=[image_token(model)])
        report = lvlm_skip.last_report(model)
    finally:
        lvlm_skip.unwrap(model)
    acted = report.skipped.any() or (report.exit_layer < NUM_LAYERS).any()
    assert acted, f"online {variant} made no decision on this model: the test would prove nothing"
    new = out[:, inputs["input_ids"].shape[1]:]
    reference = slow_reference_tokens(
        model, inputs, report, GREEDY["max_new_tokens"], static=False, suppress=(image_token(model),)
    )
    assert torch.equal(new, reference)


@pytest.mark.parametrize(
    "variant,options",
    [("skip3", dict(keep_last=2)), ("skip3", dict(keep_last=2, decide="step")), ("skip2", dict()), ("exit", dict())],
)
def test_online_equals_slow_reference_llama_batch(llama, variant, options):
    batch = left_padded_batch()
    lvlm_skip.wrap(llama, variant=variant, mode="online", detection=LOOSE, candidates=0, **options)
    try:
        out = llama.generate(**batch, **GREEDY)
        report = lvlm_skip.last_report(llama)
    finally:
        lvlm_skip.unwrap(llama)
    assert report.skipped.shape == (GREEDY["max_new_tokens"], 3, NUM_LAYERS)
    assert report.skipped.any() or (report.exit_layer < NUM_LAYERS).any()
    new = out[:, batch["input_ids"].shape[1]:]
    assert torch.equal(new, slow_reference_tokens(llama, batch, report, GREEDY["max_new_tokens"], static=False))


def test_kv_fill_project_equals_recompute(llava):
    model, _, inputs = llava
    outs = {}
    for fill in ("project", "recompute"):
        lvlm_skip.wrap(model, variant="skip3", mode="online", keep_last=2, detection=LOOSE, candidates=0, kv_fill=fill)
        try:
            outs[fill] = model.generate(**inputs, **GREEDY)
            assert lvlm_skip.last_report(model).skipped[1:].any()
        finally:
            lvlm_skip.unwrap(model)
    assert torch.equal(outs["project"], outs["recompute"])


def test_skipped_layer_cache_stays_aligned(llava):
    """Every layer that may run again holds K/V for every earlier position (no silent short cache)."""
    model, _, inputs = llava
    lvlm_skip.wrap(model, variant="skip3", mode="online", keep_last=2, detection=LOOSE, candidates=0)
    try:
        out = model.generate(**inputs, **GREEDY, return_dict_in_generate=True)
        assert lvlm_skip.last_report(model).skipped.any()
    finally:
        lvlm_skip.unwrap(model)
    cache = ModelAnatomy.output_cache(out)
    lengths = {cache.layers[i].get_seq_length() for i in range(NUM_LAYERS)}
    assert lengths == {out.sequences.shape[1] - 1}


# -- (c) variant none == stock generate ------------------------------------------------------------


def _generate_twice(model, inputs, **kwargs):
    torch.manual_seed(123)
    stock = model.generate(**inputs, **kwargs)
    lvlm_skip.wrap(model, variant="none")
    try:
        torch.manual_seed(123)
        wrapped = model.generate(**inputs, **kwargs)
    finally:
        lvlm_skip.unwrap(model)
    return stock, wrapped


@pytest.mark.parametrize("sampling", [False, True])
def test_none_identical_to_stock_llava(llava, sampling):
    model, _, inputs = llava
    kwargs = dict(max_new_tokens=8, do_sample=sampling, output_scores=True, return_dict_in_generate=True)
    stock, wrapped = _generate_twice(model, inputs, **kwargs)
    assert torch.equal(stock.sequences, wrapped.sequences)
    assert all(torch.equal(a, b) for a, b in zip(stock.scores, wrapped.scores))


@pytest.mark.parametrize("sampling", [False, True])
def test_none_identical_to_stock_llama_batch(llama, sampling):
    kwargs = dict(max_new_tokens=8, do_sample=sampling, top_k=0, output_scores=True, return_dict_in_generate=True)
    stock, wrapped = _generate_twice(llama, left_padded_batch(), **kwargs)
    assert torch.equal(stock.sequences, wrapped.sequences)
    assert all(torch.equal(a, b) for a, b in zip(stock.scores, wrapped.scores))


def test_unwrap_restores_the_stock_model(llava):
    model, _, inputs = llava
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = model.generate(**inputs, **GREEDY)
    lvlm_skip.wrap(model, variant="skip2", mode="online", detection=LOOSE)
    model.generate(**inputs, **GREEDY)
    lvlm_skip.unwrap(model)
    assert "generate" not in model.__dict__
    assert all("forward" not in layer.__dict__ for layer in model.get_decoder().layers)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(model.generate(**inputs, **GREEDY), before)


# -- drop-in: sampling, streamer, stopping criteria, logits processors, beams -----------------------


def test_sampling_streamer_and_stopping_criteria_work(llava):
    model, processor, inputs = llava

    class Collect:
        def __init__(self):
            self.chunks = []

        def put(self, value):
            self.chunks.append(value)

        def end(self):
            self.chunks.append(None)

    class StopAfter(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= inputs["input_ids"].shape[1] + 4)

    streamer = Collect()
    lvlm_skip.wrap(model, variant="skip3", mode="online", keep_last=2, detection=LOOSE)
    try:
        torch.manual_seed(0)
        out = model.generate(
            **inputs, max_new_tokens=20, do_sample=True, temperature=0.8, streamer=streamer,
            stopping_criteria=StoppingCriteriaList([StopAfter()]), logits_processor=LogitsProcessorList(),
        )
        report = lvlm_skip.last_report(model)
    finally:
        lvlm_skip.unwrap(model)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4
    assert streamer.chunks[-1] is None and len(streamer.chunks) == 1 + 4 + 1
    assert report.num_steps == 4


def test_beam_search_static_given_works_and_per_row_refused(llama):
    batch = left_padded_batch()
    lvlm_skip.wrap(llama, variant="layers", layers=[3, 4], positions="all")
    try:
        out = llama.generate(**batch, max_new_tokens=5, num_beams=2, do_sample=False)
    finally:
        lvlm_skip.unwrap(llama)
    reference = deleted_layers_model(llama, [3, 4]).generate(**batch, max_new_tokens=5, num_beams=2, do_sample=False)
    assert torch.equal(out, reference)
    lvlm_skip.wrap(llama, variant="skip2", mode="online")
    try:
        with pytest.raises(ValueError, match="beam search"):
            llama.generate(**batch, max_new_tokens=5, num_beams=2)
    finally:
        lvlm_skip.unwrap(llama)


# -- bad input: clear errors, model untouched -------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(variant="skip9"), ValueError, "unknown variant"),
        (dict(variant="skip2", mode="sometimes"), ValueError, "unknown mode"),
        (dict(variant="layers", layers=[0, 2]), ValueError, "out of range"),
        (dict(variant="layers", layers=[2, NUM_LAYERS + 1]), ValueError, "out of range"),
        (dict(variant="layers", layers=list(range(1, NUM_LAYERS + 1))), ValueError, "every one"),
        (dict(variant="exit", exit_layer=99), ValueError, "out of range"),
        (dict(variant="skip3", keep_last=NUM_LAYERS), ValueError, "keep_last"),
        (dict(variant="skip2", frobnicate=1), TypeError, "unknown option"),
        (dict(variant="skip2", detection={"rel_lo": 0.1}), ValueError, "unknown detection option"),
    ],
)
def test_bad_options_raise_and_leave_model_untouched(llama, kwargs, error, match):
    with pytest.raises(error, match=match):
        lvlm_skip.wrap(llama, **kwargs)
    assert not lvlm_skip.is_wrapped(llama)
    assert "generate" not in llama.__dict__
    assert all("forward" not in layer.__dict__ for layer in llama.model.layers)


def test_wrapping_twice_and_unsupported_model(llama):
    lvlm_skip.wrap(llama, variant="skip2")
    try:
        with pytest.raises(ValueError, match="already wrapped"):
            lvlm_skip.wrap(llama, variant="skip1")
    finally:
        lvlm_skip.unwrap(llama)
    with pytest.raises(lvlm_skip.UnsupportedModelError, match="looked for"):
        lvlm_skip.wrap(torch.nn.Linear(2, 2), variant="skip2")
    with pytest.raises(ValueError, match="not wrapped"):
        lvlm_skip.unwrap(llama)


def test_static_calibrated_reuses_calibration_and_equals_deleted_layers(llama, monkeypatch):
    """The prefill reuses calibration's outputs below the first skipped layer; tokens stay exact."""
    from lvlm_skip.skips import static

    model = llama
    inputs = {k: v[:1] for k, v in left_padded_batch().items()}
    reused = []
    original = static.write_skipped_kv
    monkeypatch.setattr(static, "write_skipped_kv", lambda anatomy, fill, layer, *a: (reused.append(layer), original(anatomy, fill, layer, *a))[1])
    with lvlm_skip.skipping(model, variant="skip3", mode="static", keep_last=2, detection=LOOSE, positions="all") as run:
        out = model.generate(**inputs, **GREEDY)
    report = run.report
    skip = report.skipped_layers(0)
    assert skip, "calibration should find a skip3 set on this model"
    assert reused[: min(skip) - 1] == list(range(1, min(skip))), "layers below the first skipped one are reused"
    assert report.layers_run[0] == NUM_LAYERS - len(skip)
    assert torch.equal(out, deleted_layers_model(model, skip).generate(**inputs, **GREEDY))


def test_report_to_dict_is_json_and_matches_the_arrays(llava):
    import json

    model, _, inputs = llava
    lvlm_skip.wrap(model, variant="layers", layers=[3, 4])
    try:
        model.generate(**inputs, max_new_tokens=3, do_sample=False, min_new_tokens=3)
        report = lvlm_skip.last_report(model)
    finally:
        lvlm_skip.unwrap(model)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["config"]["layers"] == [3, 4]
    assert [step["skipped"] for step in data["steps"]] == [[[3, 4]]] * 3
    # the prefill runs every layer over the prompt (positions="generated"), then the two layers are skipped
    assert [step["layers_run"] for step in data["steps"]] == [NUM_LAYERS, NUM_LAYERS - 2, NUM_LAYERS - 2]
