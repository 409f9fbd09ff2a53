"""The layer-call contract: every assumption lvlm_skip makes about how transformers runs a decoder.

Each test checks one assumption of :mod:`lvlm_skip.anatomy` directly against the installed
transformers, on tiny LLaVA, Llama and Qwen2-VL models. A release that changes one of them fails the
test named after it. Below them: the refusals, when a call does not look as the anatomy expects.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers.cache_utils import Cache

import lvlm_skip
from lvlm_skip.anatomy import (
    CACHE_ARGUMENT_NAMES,
    ModelAnatomy,
    UnrecognisedCallError,
    cache_argument_of,
    unpack_layer_output,
)
from lvlm_skip.clock import UnplaceableForwardError
from tiny_models import BUILDERS, VOCAB

CONTRACT_MODELS = ["LlavaForConditionalGeneration", "LlamaForCausalLM", "Qwen2VLForConditionalGeneration"]
PROMPT_LENGTH, BATCH = 6, 2


def _model(name: str):
    return BUILDERS[name]()


def _ids(batch: int = BATCH, length: int = PROMPT_LENGTH) -> torch.Tensor:
    return torch.randint(4, VOCAB, (batch, length), generator=torch.Generator().manual_seed(1))


def _record_layer_calls(model, anatomy: ModelAnatomy, **generate_kwargs) -> list[tuple[tuple, dict]]:
    """``(args, kwargs)`` of every call of the first decoder layer during a short greedy generate."""
    calls = []
    handle = anatomy.layers[0].register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((args, dict(kwargs))), with_kwargs=True
    )
    try:
        with torch.no_grad():
            model.generate(input_ids=_ids(), max_new_tokens=3, do_sample=False, pad_token_id=0, **generate_kwargs)
    finally:
        handle.remove()
    return calls


@pytest.fixture(params=CONTRACT_MODELS)
def anatomy(request) -> ModelAnatomy:
    return ModelAnatomy.from_model(_model(request.param))


def test_contract_cache_argument_name_of_layers(anatomy):
    """The decoder hands each layer the cache under the name the layer's signature declares."""
    calls = _record_layer_calls(anatomy.model, anatomy)
    assert anatomy.layer_cache_argument in CACHE_ARGUMENT_NAMES
    for _, kwargs in calls:
        caches = {name: value for name, value in kwargs.items() if isinstance(value, Cache)}
        assert list(caches) == [anatomy.layer_cache_argument], (transformers.__version__, sorted(kwargs))
        assert anatomy.layer_cache(kwargs) is caches[anatomy.layer_cache_argument]


def test_contract_cache_argument_name_of_the_model(anatomy):
    """``generate`` hands the model's ``forward`` the cache under the name its signature declares."""
    seen = []
    stock = anatomy.model.forward

    def forward(*args, **kwargs):
        seen.append(sorted(name for name, value in kwargs.items() if isinstance(value, Cache)))
        return stock(*args, **kwargs)

    anatomy.model.forward = forward
    try:
        with torch.no_grad():
            anatomy.model.generate(input_ids=_ids(), max_new_tokens=2, do_sample=False, pad_token_id=0)
    finally:
        del anatomy.model.forward
    assert seen and all(names == [anatomy.model_cache_argument] for names in seen), seen
    assert cache_argument_of(type(anatomy.model).forward) == anatomy.model_cache_argument


def test_contract_cache_per_layer_layout(anatomy):
    """A ``DynamicCache`` holds one entry per attention layer, at the layer's ``self_attn.layer_idx``,
    with keys and values `(batch, kv_heads, seq, head_dim)`."""
    with torch.no_grad():
        out = anatomy.model(input_ids=_ids(), use_cache=True)
    cache = anatomy.output_cache(out)
    assert isinstance(cache, Cache) and len(cache.layers) == anatomy.num_layers
    for j in range(1, anatomy.num_layers + 1):
        attn = anatomy.layers[j - 1].self_attn
        assert attn.layer_idx == j - 1
        entry = anatomy.cache_layer(cache, j)
        assert entry.keys.shape[0] == BATCH and entry.keys.shape[-2] == PROMPT_LENGTH
        assert entry.keys.shape[-1] == attn.head_dim and entry.values.shape == entry.keys.shape


def test_contract_sequence_length_comes_from_the_first_layer(anatomy):
    """``get_seq_length()`` reads layer 1's cache (so layer 1's K/V are always written, even when skipped)."""
    with torch.no_grad():
        cache = anatomy.output_cache(anatomy.model(input_ids=_ids(), use_cache=True))
    assert anatomy.cache_length_layer == 1
    anatomy.cache_layer(cache, 2).crop(-1)  # another layer shorter: the length does not change
    assert anatomy.cached_length(cache) == PROMPT_LENGTH
    anatomy.cache_layer(cache, 1).crop(-1)  # negative crop removes positions from the end
    assert anatomy.cached_length(cache) == PROMPT_LENGTH - 1


def test_contract_mask_and_position_arguments(anatomy):
    """Layers get the hidden state alone positionally, the rotary ``(cos, sin)`` pair per position, and a mask."""
    calls = _record_layer_calls(anatomy.model, anatomy)
    for step, (args, kwargs) in enumerate(calls):
        assert len(args) == 1 and args[0].shape[0] == BATCH
        cos, sin = anatomy.position_embeddings(kwargs)
        assert cos.shape == sin.shape and cos.shape[-2] == args[0].shape[1]
        assert "attention_mask" in kwargs
        anatomy.check_layer_call(args[1:], kwargs)  # the anatomy recognises the call
    assert calls[0][0][0].shape[1] == PROMPT_LENGTH and all(a[0].shape[1] == 1 for a, _ in calls[1:])


def test_contract_layer_output_is_a_tensor(anatomy):
    """A decoder layer returns its new hidden state as a bare tensor (5.x), not a tuple."""
    outputs = []
    handle = anatomy.layers[0].register_forward_hook(lambda module, args, output: outputs.append(output))
    try:
        with torch.no_grad():
            anatomy.model(input_ids=_ids())
    finally:
        handle.remove()
    assert isinstance(outputs[0], torch.Tensor) and outputs[0].shape[:2] == (BATCH, PROMPT_LENGTH)


def test_contract_layer_kwargs_with_cache_replaces_the_cache(anatomy):
    """A layer called with the anatomy's replacement cache writes there and nowhere else."""
    calls = _record_layer_calls(anatomy.model, anatomy)
    args, kwargs = calls[0]
    original = anatomy.layer_cache(kwargs)
    before = anatomy.cached_length(original)
    with torch.no_grad():
        anatomy.layers[0](args[0], **anatomy.layer_kwargs_with_cache(kwargs, None))
    assert anatomy.cached_length(original) == before


# -- refusals ---------------------------------------------------------------------------------------


def test_refuses_a_layer_signature_without_a_cache_argument():
    def forward(self, hidden_states, attention_mask=None):
        return hidden_states

    with pytest.raises(UnrecognisedCallError, match=rf"no cache argument.*transformers {transformers.__version__}"):
        cache_argument_of(forward)


def test_refuses_a_cache_under_another_name():
    anatomy = ModelAnatomy.from_model(_model("LlamaForCausalLM"))
    args, kwargs = _record_layer_calls(anatomy.model, anatomy)[0]
    other = next(name for name in CACHE_ARGUMENT_NAMES if name != anatomy.layer_cache_argument)
    renamed = {other if k == anatomy.layer_cache_argument else k: v for k, v in kwargs.items()}
    with pytest.raises(UnrecognisedCallError, match=rf"receives its cache as '{other}'.*"):
        anatomy.check_layer_call((), renamed)
    with pytest.raises(UnrecognisedCallError, match="positional arguments"):
        anatomy.check_layer_call((kwargs["attention_mask"],), kwargs)
    with pytest.raises(UnrecognisedCallError, match="position_embeddings"):
        anatomy.check_layer_call((), {k: v for k, v in kwargs.items() if k != "position_embeddings"})


def test_refuses_a_layer_output_it_does_not_know():
    with pytest.raises(UnrecognisedCallError, match=rf"returned dict on transformers {transformers.__version__}"):
        unpack_layer_output({"hidden_states": torch.zeros(1)})
    assert unpack_layer_output((torch.ones(1), None)).item() == 1.0


def test_a_wrapped_model_refuses_an_unknown_layer_call_at_the_first_forward():
    """If transformers renamed the cache argument again, the first forward after ``wrap`` says so."""
    model = _model("LlamaForCausalLM")
    anatomy = ModelAnatomy.from_model(model)
    layer, name = anatomy.layers[0], anatomy.layer_cache_argument
    lvlm_skip.wrap(model, variant="layers", layers=[2])
    routed = layer.forward
    try:
        # the decoder's call reaches the wrapped layer with its cache under a new name
        layer.forward = lambda hidden, **kwargs: routed(hidden, **{("kv_store" if k == name else k): v
                                                                for k, v in kwargs.items()})
        with pytest.raises(UnrecognisedCallError, match="receives its cache as 'kv_store'"):
            with torch.no_grad():
                model.generate(input_ids=_ids(), max_new_tokens=2, do_sample=False, pad_token_id=0)
    finally:
        layer.forward = routed
        lvlm_skip.unwrap(model)


@pytest.mark.parametrize("variant", ["skip3", "dola"])
def test_assisted_decoding_is_refused_not_reset(variant):
    """A multi-position forward after cached ones (prompt lookup verifies drafts so) is refused in one line."""
    model = _model("LlamaForCausalLM")
    options = dict(mode="online", detection=dict(min_shallow_layers=1, rel_low=0.9, patience=1), keep_last=1) if variant == "skip3" else {}
    lvlm_skip.wrap(model, variant=variant, **options)
    ids = torch.tensor([[5, 6, 7, 5, 6, 7, 5, 6]])  # repeats, so prompt lookup drafts several tokens
    try:
        with pytest.raises(UnplaceableForwardError, match=r"^a forward over \d+ new positions after \d+ cached ones") as info:
            with torch.no_grad():
                model.generate(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=0, prompt_lookup_num_tokens=3)
        assert "\n" not in str(info.value)
    finally:
        lvlm_skip.unwrap(model)


# -- no deprecated calls ------------------------------------------------------------------------------


def _deprecations(run) -> set[str]:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            run()
    return {str(w.message)[:200] for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))}


@pytest.mark.parametrize("options", [
    dict(variant="layers", layers=[2], kv_fill="project"),
    dict(variant="layers", layers=[2], kv_fill="recompute"),
    dict(variant="skip3", keep_last=1, detection=dict(min_shallow_layers=1, rel_low=0.9, patience=1)),
    dict(variant="skip3", mode="online", keep_last=1, detection=dict(min_shallow_layers=1, rel_low=0.9, patience=1)),
    dict(variant="skip2", mode="online", detection=dict(min_shallow_layers=1, rel_low=0.9, patience=1)),
    dict(variant="dola"), dict(variant="deco"), dict(variant="vcd"),
], ids=["static-project", "static-recompute", "static-measured", "online-skip3", "online-skip2", "dola", "deco", "vcd"])
def test_our_calls_trigger_no_transformers_deprecation(tiny_llava, options):
    """A wrapped generate warns of nothing deprecated that stock generate does not warn of itself."""
    model, inputs = tiny_llava.model, tiny_llava.inputs
    kwargs = dict(max_new_tokens=3, do_sample=False)
    stock = _deprecations(lambda: model.generate(**inputs, **kwargs))
    lvlm_skip.wrap(model, **options)
    try:
        wrapped = _deprecations(lambda: model.generate(**inputs, **kwargs))
    finally:
        lvlm_skip.unwrap(model)
    assert wrapped <= stock, sorted(wrapped - stock)
