"""Builders for *scene-llava*: a small LLaVA-1.5-style model for the procedural scene benchmark.

Everything is built from configs (no downloads): a word-level tokenizer over the scene
vocabulary (:func:`lvlm_skip.inputs.builtin_models.build_word_tokenizer`), a CLIP image processor, a
``LlavaProcessor`` with the LLaVA-1.5 chat template, and a ``LlavaForConditionalGeneration`` with a
small CLIP vision tower and a deep, narrow Llama decoder. Saved with ``save_pretrained``, the model
and processor load with ``LlavaForConditionalGeneration.from_pretrained(dir)`` /
``AutoProcessor.from_pretrained(dir)`` exactly like ``llava-hf/llava-1.5-7b-hf``; prompts are
formatted by the chat template (:func:`lvlm_skip.inputs.models.chat_prompt`).
"""

from __future__ import annotations

import dataclasses
import logging

from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from lvlm_skip.scenes import IMAGE_SIZE, vocabulary
from lvlm_skip.inputs.builtin_models import build_word_tokenizer

logger = logging.getLogger(__name__)

PAD, UNK, BOS, EOS, IMAGE = "<pad>", "<unk>", "<s>", "</s>", "<image>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, IMAGE)

# The chat template of llava-hf/llava-1.5-7b-hf.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclasses.dataclass
class SceneLlavaSpec:
    """Architecture of scene-llava.

    Attributes:
        image_size: Input resolution of the vision tower.
        patch_size: ViT patch size; ``(image_size // patch_size) ** 2`` image tokens.
        vision_hidden: Vision tower width.
        vision_layers: Vision tower depth.
        vision_heads: Vision tower attention heads.
        hidden: Decoder width.
        layers: Decoder depth (the layer-wise analysis needs a deep decoder).
        heads: Decoder attention heads.
        intermediate: Decoder MLP width.
        max_positions: Maximum sequence length.
    """

    image_size: int = IMAGE_SIZE
    patch_size: int = 16
    vision_hidden: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    hidden: int = 160
    layers: int = 16
    heads: int = 4
    intermediate: int = 432
    max_positions: int = 160

    @property
    def num_image_tokens(self) -> int:
        """Image tokens per image (the CLS token is dropped, LLaVA's ``default`` strategy)."""
        return (self.image_size // self.patch_size) ** 2


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The word-level tokenizer of scene-llava (:func:`lvlm_skip.inputs.builtin_models.build_word_tokenizer`).

    Its vocabulary is the scene vocabulary plus the LLaVA prompt words; text is lower-cased and
    split on whitespace and punctuation, ``<s>`` is prepended like the Llama tokenizer does and
    unknown words map to ``<unk>``. The arguments are those of the shipped model's tokenizer,
    which this reproduces byte for byte (tested).
    """
    return build_word_tokenizer(vocabulary(), special_tokens=SPECIAL_TOKENS, split="regex", add_bos=True,
                                model_max_length=512)


def build_image_processor(spec: SceneLlavaSpec):
    """CLIP image processor resizing to the tower's resolution (PIL backend, no torchvision)."""
    try:  # transformers 5 names the PIL backend explicitly
        from transformers import CLIPImageProcessorPil as cls
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor as cls
    return cls(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
        do_center_crop=True,
        do_convert_rgb=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )


def build_processor(spec: SceneLlavaSpec | None = None) -> LlavaProcessor:
    """``LlavaProcessor`` whose ``<image>`` expands to ``spec.num_image_tokens`` tokens."""
    spec = spec or SceneLlavaSpec()
    proc = LlavaProcessor(
        image_processor=build_image_processor(spec),
        tokenizer=build_tokenizer(),
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE,
        num_additional_image_tokens=1,
    )
    return proc


def build_config(spec: SceneLlavaSpec, tokenizer: PreTrainedTokenizerFast) -> LlavaConfig:
    """``LlavaConfig`` with a Llama decoder and a CLIP vision tower."""
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_positions,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=4 * spec.vision_hidden,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        projection_dim=spec.vision_hidden,
        hidden_act="quick_gelu",
    )
    return LlavaConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        image_seq_length=spec.num_image_tokens,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )


def build_model(spec: SceneLlavaSpec | None = None,
                processor: LlavaProcessor | None = None) -> LlavaForConditionalGeneration:
    """A freshly initialised scene-llava (weights from the current torch RNG state)."""
    spec = spec or SceneLlavaSpec()
    processor = processor or build_processor(spec)
    config = build_config(spec, processor.tokenizer)
    model = LlavaForConditionalGeneration(config)
    gen = model.generation_config
    gen.bos_token_id = config.text_config.bos_token_id
    gen.eos_token_id = config.text_config.eos_token_id
    gen.pad_token_id = config.text_config.pad_token_id
    gen.do_sample = False
    gen.max_new_tokens = 48
    logger.info("scene-llava: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    return model

