"""ModelAnatomy on the six supported classes (tiny configs), unsupported models, layer checks,
and project_kv_into_cache_ against what a real layer writes into its cache."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lvlm_skip.anatomy import ModelAnatomy, UnsupportedModelError, project_kv_into_cache_
from tiny_models import BUILDERS, HIDDEN, LAYERS, VOCAB, count_parameters


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_anatomy_of_supported_classes(name):
    model = BUILDERS[name]()
    assert type(model).__name__ == name
    assert count_parameters(model) < 200_000
    anatomy = ModelAnatomy.from_model(model)
    assert anatomy.num_layers == LAYERS == len(anatomy.layers)
    assert anatomy.hidden_size == HIDDEN
    assert anatomy.vocab_size == VOCAB
    assert anatomy.lm_head is model.get_output_embeddings()
    assert anatomy.decoder is model.get_decoder()
    assert anatomy.final_norm is anatomy.decoder.norm
    assert all(isinstance(layer, nn.Module) for layer in anatomy.layers)


class _Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)


def test_unsupported_models_name_what_was_looked_for():
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    for model in (_Plain(), bert):
        with pytest.raises(UnsupportedModelError, match=r"get_decoder\(\).*layers.*get_output_embeddings") as info:
            ModelAnatomy.from_model(model)
        assert type(model).__name__ in str(info.value)
    assert issubclass(UnsupportedModelError, ValueError)


def test_check_layer_range():
    anatomy = ModelAnatomy.from_model(BUILDERS["LlamaForCausalLM"]())
    assert anatomy.check_layer(1) == 1
    assert anatomy.check_layer(LAYERS) == LAYERS
    assert anatomy.check_layer(0, allow_embeddings=True) == 0
    for bad in (0, LAYERS + 1, -1, 1.0, True, "2"):
        with pytest.raises(ValueError, match=rf"out of range.*1\.\.{LAYERS}"):
            anatomy.check_layer(bad)
    with pytest.raises(ValueError, match=rf"0\.\.{LAYERS}"):
        anatomy.check_layer(LAYERS + 1, allow_embeddings=True)


@pytest.mark.parametrize("name", ["LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"])
def test_project_kv_matches_what_the_layer_writes(name):
    from transformers import DynamicCache

    model = BUILDERS[name](seed=1)
    with torch.no_grad():  # random non-zero biases (Qwen2 has k/v biases) make the check stricter
        for layer in model.model.layers:
            if layer.self_attn.k_proj.bias is not None:
                layer.self_attn.k_proj.bias.normal_()
                layer.self_attn.v_proj.bias.normal_()
    anatomy = ModelAnatomy.from_model(model)
    input_ids = torch.randint(3, VOCAB, (2, 7))
    with torch.no_grad():
        # 1. a real forward with a cache: what every layer writes
        out = model(input_ids=input_ids, use_cache=True, output_hidden_states=True)
        written = anatomy.output_cache(out)
        position_ids = torch.arange(input_ids.shape[1]).unsqueeze(0).expand(2, -1)
        for index in range(1, anatomy.num_layers):  # layer index i's input is hidden_states[i] (i < L)
            hidden_in = out.hidden_states[index]
            position_embeddings = anatomy.decoder.rotary_emb(hidden_in, position_ids)
            # 2. project the same input into a fresh cache
            cache = DynamicCache(config=model.config)
            project_kv_into_cache_(anatomy.layers[index], hidden_in, position_embeddings, cache)
            torch.testing.assert_close(cache.layers[index].keys, written.layers[index].keys, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(cache.layers[index].values, written.layers[index].values, rtol=1e-5, atol=1e-5)
            # 3. and the other layers' caches were not touched
            assert cache.get_seq_length(index) == input_ids.shape[1]


def test_project_kv_rejects_non_llama_layers():
    with pytest.raises(UnsupportedModelError, match="input_layernorm"):
        project_kv_into_cache_(nn.Linear(4, 4), torch.zeros(1, 1, 4), (torch.zeros(1), torch.zeros(1)), None)


def test_eos_token_ids_read_the_generation_config_then_the_text_config():
    from types import SimpleNamespace

    from lvlm_skip.anatomy import eos_token_ids

    class Config(SimpleNamespace):
        def get_text_config(self):
            return self

    def model(generation_eos, text_eos):
        return SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=generation_eos),
                               config=Config(eos_token_id=text_eos))

    assert eos_token_ids(model([2, 7], 9)) == {2, 7}
    assert eos_token_ids(model(3, 9)) == {3}
    assert eos_token_ids(model(None, 9)) == {9}
    assert eos_token_ids(model(None, None)) == frozenset()


@pytest.mark.parametrize("name", ["Llava", "LlavaNext", "Mistral3", "AyaVision", "Idefics3", "InternVL"])
def test_the_language_model_alone_computes_the_models_text_logits(name):
    """language_model_of: a causal LM of the text config holding the model's own decoder and head (no copy), with the
    model's logits on a text prompt, a config that names its layers (transformers' early-exit assistant reads it),
    and the model's image placeholders read from the config."""
    from lvlm_skip.anatomy import language_model_of, placeholder_token_ids
    from vlm_zoo import SERVED

    model = SERVED[name]().eval()
    try:
        alone = language_model_of(model)
    except UnsupportedModelError as refused:
        # transformers 5.23's AyaVisionForConditionalGeneration does not apply Cohere's logit_scale, which
        # Cohere2ForCausalLM applies: the logits would differ, so the LM alone is refused (5.25 applies it in both)
        assert name == "AyaVision" and "transforms its logits differently" in str(refused)
        return
    anatomy, own = ModelAnatomy.from_model(model), ModelAnatomy.from_model(alone)
    assert own.decoder is anatomy.decoder and own.lm_head is anatomy.lm_head
    assert alone.config.num_hidden_layers == anatomy.num_layers
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(alone(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)
    assert language_model_of(alone) is alone and placeholder_token_ids(alone) == frozenset()
    assert placeholder_token_ids(model) and all(0 <= t < anatomy.vocab_size for t in placeholder_token_ids(model))


def test_a_language_model_that_would_compute_other_logits_is_refused(monkeypatch):
    """No causal LM class (Qwen2-VL's text config), or one that transforms the logits otherwise (Gemma3ForCausalLM
    soft-caps them, Gemma3ForConditionalGeneration does not): refused in one line. A single-config model (Chameleon)
    is its own language model."""
    from lvlm_skip import anatomy as anatomy_module
    from vlm_zoo import SERVED

    with pytest.raises(UnsupportedModelError, match="Qwen2VLTextConfig.* has no causal LM class"):
        anatomy_module.language_model_of(SERVED["Qwen2VL"]())
    with pytest.raises(UnsupportedModelError, match="Gemma3ForConditionalGeneration transforms its logits differently"):
        anatomy_module.language_model_of(SERVED["Gemma3"]())
    chameleon = SERVED["Chameleon"]()
    assert anatomy_module.language_model_of(chameleon) is chameleon

    model = SERVED["Llava"]()
    real = anatomy_module._final_logit_transform
    monkeypatch.setattr(anatomy_module, "_final_logit_transform",
                        lambda m: {"logit_scale": 0.5} if m is model else real(m))
    with pytest.raises(UnsupportedModelError, match="transforms its logits differently"):
        anatomy_module.language_model_of(model)
