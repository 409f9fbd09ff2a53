"""Tiny random models of the classes the anatomy is tested on (sizes as constructor arguments)."""

from __future__ import annotations

from torch import nn

HIDDEN, LAYERS, VOCAB = 32, 3, 99


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
TEXT = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    intermediate_size=64,
    num_hidden_layers=LAYERS,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=32, patch_size=8, projection_dim=32)


def _llava():
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(text_config=LlamaConfig(**TEXT), vision_config=CLIPVisionConfig(**CLIP), image_token_id=3)
    return LlavaForConditionalGeneration(config)


def _llava_next():
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration

    config = LlavaNextConfig(
        text_config=LlamaConfig(**TEXT), vision_config=CLIPVisionConfig(**CLIP), image_token_id=3, image_grid_pinpoints=[[32, 32]]
    )
    return LlavaNextForConditionalGeneration(config)


def _qwen2_vl():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    text = dict(TEXT, rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2]})  # head_dim 8
    vision = dict(depth=1, embed_dim=16, hidden_size=HIDDEN, num_heads=2, mlp_ratio=2, patch_size=2, spatial_merge_size=1, temporal_patch_size=1)
    return Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=text, vision_config=vision))


def _causal(config_name: str, model_name: str):
    import transformers

    config = getattr(transformers, config_name)(**TEXT)
    return getattr(transformers, model_name)(config)


BUILDERS = {
    "LlavaForConditionalGeneration": _llava,
    "LlavaNextForConditionalGeneration": _llava_next,
    "Qwen2VLForConditionalGeneration": _qwen2_vl,
    "LlamaForCausalLM": lambda: _causal("LlamaConfig", "LlamaForCausalLM"),
    "MistralForCausalLM": lambda: _causal("MistralConfig", "MistralForCausalLM"),
    "Qwen2ForCausalLM": lambda: _causal("Qwen2Config", "Qwen2ForCausalLM"),
}
