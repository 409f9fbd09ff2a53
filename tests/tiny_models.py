"""The tiny random models of the tests: one factory per model class, and the loose detection thresholds.

Every factory seeds the weights (``torch.manual_seed(seed)`` right before construction), returns the
model in eval mode, in float32 unless ``dtype`` says otherwise, and checks its parameter count, so a
misspelt size can never silently give a large model. Sizes that differ between tests are arguments,
so that two tests that build "the same" model build it here with the same values.

* :func:`make_llama` (and :func:`make_causal_lm` for Mistral and Qwen2): a text-only decoder.
* :func:`make_llava`: a ``LlavaForConditionalGeneration`` and its processor (word tokenizer, CLIP
  image processor), built by :func:`lvlm_skip.inputs.builtin_models.build_tiny_llava`.
* :func:`make_llava_bare`, :func:`make_llava_next`, :func:`make_qwen2_vl`: image-text models from
  configs alone (no processor), for the anatomy and the transformers contract.
* :data:`BUILDERS`: the anatomy matrix, class name -> ``factory(seed=0)`` at the sizes
  :data:`HIDDEN`, :data:`LAYERS`, :data:`VOCAB`.

The names are ``make_*`` because ``tiny_llama`` and ``tiny_llava`` are the session fixtures of
``conftest.py``.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

#: Detection thresholds that make a random tiny model show critical and mutation layers: one shallow
#: value defines the level, a layer 10% under it is low, one low layer confirms; a mutation is a JSD
#: spike of 1.5x or a change of the top-1 token.
LOOSE = dict(min_shallow_layers=1, rel_low=0.9, patience=1, spike_factor=1.5, mutation_rule="spike_or_top1")

#: Sizes of the anatomy matrix (:data:`BUILDERS`).
HIDDEN, LAYERS, VOCAB = 32, 3, 99

#: The CLIP tower of the config-only LLaVA models.
CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=32, patch_size=8,
            projection_dim=32)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def text_config(layers: int = 8, *, vocab: int = 97, hidden: int = 32, intermediate: int = 64, max_positions: int | None = None,
                pad: int | None = 0, bos: int | None = 1, eos: int | None = 2, **extra) -> dict:
    """Keyword arguments of a Llama-style text config: 4 query heads, 2 key-value heads (GQA).

    ``max_positions=None`` keeps the config class's default; ``extra`` goes to the config as is
    (``initializer_range``, ``rope_parameters``).
    """
    config = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, pad_token_id=pad, bos_token_id=bos, eos_token_id=eos, **extra)
    if max_positions is not None:
        config["max_position_embeddings"] = max_positions
    return config


def _seeded(build, seed: int, dtype: torch.dtype, limit: int) -> nn.Module:
    torch.manual_seed(seed)
    model = build().to(dtype).eval()
    assert count_parameters(model) < limit, count_parameters(model)
    return model


def make_causal_lm(class_name: str = "LlamaForCausalLM", layers: int = 8, *, seed: int = 0, dtype: torch.dtype = torch.float32,
                   limit: int = 200_000, **config) -> nn.Module:
    """A random text-only decoder of ``transformers.<class_name>`` (Llama, Mistral, Qwen2) with fewer
    than ``limit`` parameters; ``config``: :func:`text_config`."""
    import transformers

    config_class = getattr(transformers, class_name.replace("ForCausalLM", "Config"))
    model_class = getattr(transformers, class_name)
    return _seeded(lambda: model_class(config_class(**text_config(layers, **config))), seed, dtype, limit)


def make_llama(layers: int = 8, *, seed: int = 0, dtype: torch.dtype = torch.float32, limit: int = 200_000, **config) -> nn.Module:
    """A random ``LlamaForCausalLM``: hidden 32, MLP 64, vocabulary 97 unless told; ``config``: :func:`text_config`."""
    return make_causal_lm("LlamaForCausalLM", layers, seed=seed, dtype=dtype, limit=limit, **config)


def make_llava(layers: int = 6, *, seed: int = 0, dtype: torch.dtype = torch.float32, hidden: int = 32, intermediate: int = 64,
               limit: int = 500_000, **options):
    """A random LLaVA and its processor: ``(model, processor)``.

    ``hidden`` and ``intermediate`` size the Llama decoder; ``options`` go to
    :func:`lvlm_skip.inputs.builtin_models.build_tiny_llava` (``image_size``, ``patch_size``, ...).
    """
    from lvlm_skip.inputs.builtin_models import build_tiny_llava

    model, processor = build_tiny_llava(num_layers=layers, hidden_size=hidden, intermediate_size=intermediate, seed=seed,
                                        dtype=dtype, **options)
    assert count_parameters(model) < limit, count_parameters(model)
    assert model.config.text_config.num_hidden_layers == layers and not model.training
    return model, processor


def make_llava_bare(layers: int = LAYERS, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A random ``LlavaForConditionalGeneration`` from configs alone: Llama text (vocabulary 99, 128
    positions), one CLIP layer, image token 3."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    text = LlamaConfig(**text_config(layers, vocab=VOCAB, hidden=HIDDEN, max_positions=128))
    config = LlavaConfig(text_config=text, vision_config=CLIPVisionConfig(**CLIP), image_token_id=3)
    return _seeded(lambda: LlavaForConditionalGeneration(config), seed, dtype, 200_000)


def make_llava_next(layers: int = LAYERS, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A random ``LlavaNextForConditionalGeneration`` from configs alone (as :func:`make_llava_bare`, one 32x32 grid)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration

    text = LlamaConfig(**text_config(layers, vocab=VOCAB, hidden=HIDDEN, max_positions=128))
    config = LlavaNextConfig(text_config=text, vision_config=CLIPVisionConfig(**CLIP), image_token_id=3,
                             image_grid_pinpoints=[[32, 32]])
    return _seeded(lambda: LlavaNextForConditionalGeneration(config), seed, dtype, 200_000)


def make_qwen2_vl(layers: int = 8, *, seed: int = 0, dtype: torch.dtype = torch.float32, max_positions: int = 256) -> nn.Module:
    """A random ``Qwen2VLForConditionalGeneration``: Llama-sized text (vocabulary 99, head_dim 8, M-RoPE
    sections 1, 1, 2) and a one-block vision tower (patch 2, no spatial merge, one frame)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    text = text_config(layers, vocab=VOCAB, hidden=HIDDEN, max_positions=max_positions,
                       rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2]})
    vision = dict(depth=1, embed_dim=16, hidden_size=HIDDEN, num_heads=2, mlp_ratio=2, patch_size=2, spatial_merge_size=1,
                  temporal_patch_size=1)
    return _seeded(lambda: Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=text, vision_config=vision)), seed, dtype,
                   200_000)


def _anatomy_causal(class_name: str, seed: int = 0) -> nn.Module:
    return make_causal_lm(class_name, LAYERS, vocab=VOCAB, hidden=HIDDEN, max_positions=128, seed=seed)


#: The anatomy matrix: class name -> ``factory(seed=0)``, each at :data:`LAYERS` layers, hidden
#: :data:`HIDDEN`, vocabulary :data:`VOCAB`.
BUILDERS = {
    "LlavaForConditionalGeneration": make_llava_bare,
    "LlavaNextForConditionalGeneration": make_llava_next,
    "Qwen2VLForConditionalGeneration": functools.partial(make_qwen2_vl, LAYERS, max_positions=128),
    "LlamaForCausalLM": functools.partial(_anatomy_causal, "LlamaForCausalLM"),
    "MistralForCausalLM": functools.partial(_anatomy_causal, "MistralForCausalLM"),
    "Qwen2ForCausalLM": functools.partial(_anatomy_causal, "Qwen2ForCausalLM"),
}
