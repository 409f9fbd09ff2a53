"""Tiny randomly initialised models, built offline from configs, for tests, demos and benchmarks.

They use the same classes and code paths as ``llava-hf/llava-1.5-7b-hf`` (``LlavaForConditionalGeneration``
with a Llama decoder and a CLIP vision tower, a ``LlavaProcessor``), only smaller. Sizes are passed
as constructor arguments so a misspelt config key cannot silently give a full-size model.
"""

from __future__ import annotations

from typing import get_args

import torch
from PIL import Image, ImageDraw
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from ..config import WordSplit

#: The demo vocabulary of the word-level tokenizer (after the special tokens).
DEMO_WORDS = (
    "the image shows a an of on in and with is are red black blue green yellow white dog cat cup "
    "apple ball car tree house sky grass water man woman boy girl table plate left right top bottom "
    "center small large two three one what color describe this please detail yes no . , ?"
).split()
SPECIAL_TOKENS = ("<unk>", "<pad>", "<s>", "</s>", "<image>")
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n{% else %}{{ item['text'] }}"
    "{% endif %}{% endfor %} {% else %}ASSISTANT: {% for item in message['content'] %}{{ item['text'] }}"
    "{% endfor %}</s>{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


#: How :func:`build_word_tokenizer` splits text after whitespace.
WORD_SPLITS: tuple[str, ...] = get_args(WordSplit)


def build_word_tokenizer(
    words=DEMO_WORDS,
    *,
    special_tokens=SPECIAL_TOKENS,
    split: WordSplit = "punctuation",
    add_bos: bool = False,
    model_max_length: int | None = None,
):
    """A word-level ``PreTrainedTokenizerFast``, built offline: one id per whole word.

    Text is lower-cased, split on whitespace, then split again by ``split``; a piece that is not
    in the vocabulary becomes ``<unk>``. Decoding joins words with spaces and attaches punctuation
    to the word before it.

    Args:
        words: The vocabulary after the special tokens, in id order (repeats and special tokens
            among them are dropped).
        special_tokens: ``<unk>``, ``<pad>``, ``<s>``, ``</s>`` and ``<image>`` in the order of their
            ids (0, 1, ...); their roles go by name, not position.
        split: ``"punctuation"``: every punctuation character is a piece of its own (tokenizers'
            ``Punctuation``); ``"regex"``: the pieces are the matches of ``\\w+|[^\\w\\s]`` (runs of
            word characters, and every other character alone).
        add_bos: Prepend ``<s>`` when encoding with special tokens, as the Llama tokenizer does.
        model_max_length: The tokenizer's ``model_max_length``; ``None`` leaves transformers' default.

    Returns:
        The tokenizer, padding on the left.

    Raises:
        ValueError: ``split`` is not one of :data:`WORD_SPLITS`, or a special token is missing.
    """
    if split not in WORD_SPLITS:
        raise ValueError(f"`split` (={split!r}) has to be one of {WORD_SPLITS}")
    missing = sorted(set(SPECIAL_TOKENS) - set(special_tokens))
    if missing:
        raise ValueError(f"`special_tokens` lacks {missing}")
    vocab = {token: i for i, token in enumerate(dict.fromkeys([*special_tokens, *words]))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    if split == "punctuation":
        pieces = pre_tokenizers.Punctuation()
    else:
        pieces = pre_tokenizers.Split(Regex(r"\w+|[^\w\s]"), "isolated")
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pieces])
    if add_bos:
        core.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
        )
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    limits = {} if model_max_length is None else {"model_max_length": model_max_length}
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
        **limits,
    )


def build_tiny_llava(
    *,
    num_layers: int = 4,
    hidden_size: int = 32,
    intermediate_size: int = 64,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    vocab_words=DEMO_WORDS,
    vocab_size: int | None = None,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden_size: int = 32,
    vision_layers: int = 2,
    vision_intermediate_size: int | None = None,
    vision_heads: int = 4,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
):
    """A random ``LlavaForConditionalGeneration`` and its ``LlavaProcessor``.

    Args:
        num_layers, hidden_size, intermediate_size, num_heads, num_kv_heads: The Llama decoder.
        vocab_words: Words of the tokenizer; the LM vocabulary is at least their number.
        vocab_size: LM vocabulary size (>= tokenizer size; the extra rows are never produced by the
            tokenizer but are real logits, as with padded vocabularies).
        image_size, patch_size, vision_hidden_size, vision_layers, vision_intermediate_size (default
            ``2 * vision_hidden_size``), vision_heads: The CLIP vision tower; the image becomes
            ``(image_size / patch_size) ** 2`` visual tokens.
        seed: Weight initialisation seed.
        dtype: Parameter dtype.
        device: Where the weights are created (default: the CPU); ``"meta"`` builds the structure only.

    Returns:
        ``(model, processor)``, the model in eval mode.
    """
    tokenizer = build_word_tokenizer(vocab_words)
    vocab = max(vocab_size or 0, len(tokenizer))
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    text_config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision_config = CLIPVisionConfig(
        hidden_size=vision_hidden_size,
        intermediate_size=vision_intermediate_size or 2 * vision_hidden_size,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden_size,
    )
    config = LlavaConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=image_token_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    with torch.device(device if device is not None else "cpu"):
        model = LlavaForConditionalGeneration(config).to(dtype).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


#: The benchmark model's layer plan, LLaVA-1.5-7B's layers as the paper reads them (critical ~18, deep mutations).
BENCH_CRITICAL_LAYER = 18
BENCH_LOUD_LAYERS = (27, 30)

#: ``build_tiny_llava`` arguments of the two benchmark shapes: LLaVA-1.5-7B scaled for a CPU, and full size.
BENCH_SHAPES = {
    "cpu": dict(num_layers=32, hidden_size=512, intermediate_size=1376, num_heads=8, num_kv_heads=8, vocab_size=4000,
                image_size=336, patch_size=14, vision_hidden_size=256, vision_layers=4),
    # llava-hf/llava-1.5-7b-hf: Vicuna-7B (Llama, 4096 / 11008, 32 heads, vocabulary 32064 with the
    # image and pad tokens) and CLIP ViT-L/14 at 336 px (1024 / 4096, 24 layers, 16 heads).
    "7b": dict(num_layers=32, hidden_size=4096, intermediate_size=11008, num_heads=32, num_kv_heads=32,
               vocab_size=32064, image_size=336, patch_size=14, vision_hidden_size=1024, vision_layers=24,
               vision_intermediate_size=4096, vision_heads=16),
}


def build_bench_llava(
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    *,
    shape: str = "cpu",
    device: torch.device | str | None = None,
    critical_layer: int = BENCH_CRITICAL_LAYER,
    loud_layers: tuple[int, ...] = BENCH_LOUD_LAYERS,
    growth: float = 1.25,
    quiet_scale: float = 0.03,
    trigger_scale: float = 30.0,
):
    """The LLaVA-1.5-7B shape scaled for a CPU benchmark, with layer curves shaped like LLaVA's.

    **Shape** (``shape="cpu"``, the built-in ``bench-llava``): 32 Llama layers, a CLIP tower at 336 px /
    patch 14 (576 visual tokens, as LLaVA-1.5), width 512 and MLP 1376 (LLaVA's 4096 / 11008 ratio),
    and a 4000-token vocabulary chosen so that the LM head costs the same fraction of a decoder layer
    as in LLaVA-1.5-7B (32000 x 4096 against ~12.4 x 4096^2 MACs: 0.65 of a layer), because that ratio
    sets the cost of online readouts. Absolute times are not comparable with a 7B model.
    ``shape="7b"`` (the built-in ``bench-llava-7b``) is llava-1.5-7b-hf's full configuration (7.06 B
    parameters: 14 GB in float16), for a GPU; build it with ``device="cuda"``. Its weights get the same
    edits; that the default detector finds the planted layers is tested on the CPU shape only (the
    7B shape does not fit this project's CPU machines).

    **Curves.** With plain random weights every layer changes the next-token readout a little less
    than the one before, and no critical layer shows. The weights are therefore edited (still random,
    no tensor changes size, so the timings are those of the shape); with ``s_j`` the factor applied to
    layer ``j``'s residual-writing projections (attention ``o_proj``, MLP ``down_proj``):

    1. *shallow stage*, layers ``1 .. c-1`` (``c = critical_layer``): ``s_j = growth^j``, so each layer's
       update keeps pace with the growing residual stream and the adjacent-layer JSD stays high;
    2. *stabilization*, layers ``c .. L-1``: ``s_j = quiet_scale * growth^(c-1)``: small updates, so the
       JSD drops at ``c`` and stays low;
    3. *mutations*: each of ``loud_layers`` gets one trigger neuron in its MLP, gate row scaled by
       ``trigger_scale`` and down-projection column by ``trigger_scale / quiet_scale``: when the neuron
       fires (most tokens of this model), the layer writes a large update and the JSD spikes there;
    4. *last layer* ``L``: ``s_L = growth^(c-1)``, a full-size update like Llama's last layer, which
       reshapes the distribution for every token (not a mutation).

    The default detector finds ``c`` and the loud layers on this model's curves (tested).

    Returns:
        ``(model, processor)``, the model in eval mode.
    """
    if shape not in BENCH_SHAPES:
        raise ValueError(f"`shape` (={shape!r}) has to be one of {tuple(BENCH_SHAPES)}")
    model, processor = build_tiny_llava(**BENCH_SHAPES[shape], seed=seed, dtype=dtype, device=device)
    layers = model.get_decoder().layers
    num_layers = len(layers)
    generator = torch.Generator().manual_seed(seed + 1)  # on the CPU: the same neurons on every device
    with torch.no_grad():
        for j, layer in enumerate(layers, start=1):
            scale = growth ** min(j, critical_layer - 1)
            if critical_layer <= j < num_layers:
                scale *= quiet_scale
            layer.self_attn.o_proj.weight.mul_(scale)
            layer.mlp.down_proj.weight.mul_(scale)
            if j in loud_layers:
                neuron = int(torch.randint(layer.mlp.gate_proj.out_features, (1,), generator=generator))
                layer.mlp.gate_proj.weight[neuron].mul_(trigger_scale)
                layer.mlp.down_proj.weight[:, neuron].mul_(trigger_scale / quiet_scale)
    return model, processor


def demo_image(size: int = 336):
    """A simple drawn scene: a red ball and a black cup on a table under a blue sky (RGB PIL image)."""
    image = Image.new("RGB", (size, size), (135, 190, 235))
    draw = ImageDraw.Draw(image)
    s = size / 336
    draw.rectangle((0, 220 * s, size, size), fill=(150, 100, 60))
    draw.ellipse((50 * s, 130 * s, 150 * s, 230 * s), fill=(210, 30, 30))
    draw.rectangle((200 * s, 140 * s, 280 * s, 230 * s), fill=(20, 20, 20))
    draw.arc((265 * s, 160 * s, 305 * s, 205 * s), -90, 90, fill=(20, 20, 20), width=max(1, int(8 * s)))
    return image
