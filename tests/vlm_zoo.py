"""Tiny random models of transformers' image-text-to-text classes for the architecture matrix (sizes as
constructor arguments; text-only prompts, so no processor is needed)."""

from __future__ import annotations

import torch
import transformers as tf

L = 8
TEXT = dict(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=L, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, max_position_embeddings=128, pad_token_id=0, bos_token_id=1,
            eos_token_id=2, initializer_range=0.3)
CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=32,
            patch_size=8, projection_dim=32)
SIGLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=32,
              patch_size=8)
QWEN_VISION = dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=2,
                   spatial_merge_size=1, temporal_patch_size=1)
MROPE = {"rope_type": "default", "mrope_section": [1, 1, 2]}


def _llava():
    return tf.LlavaForConditionalGeneration(tf.LlavaConfig(
        text_config=tf.LlamaConfig(**TEXT), vision_config=tf.CLIPVisionConfig(**CLIP), image_token_id=3))


def _llava_next():
    return tf.LlavaNextForConditionalGeneration(tf.LlavaNextConfig(
        text_config=tf.LlamaConfig(**TEXT), vision_config=tf.CLIPVisionConfig(**CLIP), image_token_id=3,
        image_grid_pinpoints=[[32, 32]]))


def _llava_onevision():
    return tf.LlavaOnevisionForConditionalGeneration(tf.LlavaOnevisionConfig(
        text_config=tf.Qwen2Config(**TEXT), vision_config=tf.SiglipVisionConfig(**SIGLIP), image_token_id=3,
        video_token_id=4, image_grid_pinpoints=[[32, 32]]))


def _vipllava():
    return tf.VipLlavaForConditionalGeneration(tf.VipLlavaConfig(
        text_config=tf.LlamaConfig(**TEXT), vision_config=tf.CLIPVisionConfig(**dict(CLIP, num_hidden_layers=2)),
        image_token_id=3, vision_feature_layers=[-2, -1]))


#: the Qwen family's image token and its vision start / end / video tokens, inside the tiny vocabulary
QWEN_TOKENS = dict(image_token_id=3, vision_start_token_id=96, vision_end_token_id=97, video_token_id=98)


def _qwen2_vl():
    return tf.Qwen2VLForConditionalGeneration(tf.Qwen2VLConfig(
        text_config=dict(TEXT, rope_parameters=MROPE), vision_config=QWEN_VISION, **QWEN_TOKENS))


def _qwen2_5_vl():
    vision = dict(depth=1, hidden_size=16, out_hidden_size=32, intermediate_size=32, num_heads=2, patch_size=2,
                  spatial_merge_size=1, temporal_patch_size=1, fullatt_block_indexes=[0])
    return tf.Qwen2_5_VLForConditionalGeneration(tf.Qwen2_5_VLConfig(
        text_config=dict(TEXT, rope_parameters=MROPE), vision_config=vision, **QWEN_TOKENS))


def _gemma3():
    text = dict(TEXT, final_logit_softcapping=3.0, sliding_window=8, query_pre_attn_scalar=8)
    model = tf.Gemma3ForConditionalGeneration(tf.Gemma3Config(
        text_config=text, vision_config=SIGLIP, mm_tokens_per_image=4, image_token_index=3, boi_token_index=4,
        eoi_token_index=5))
    # Gemma 3 initialises its image projection to zeros: random weights, or the image would change nothing
    torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.3)
    return model


def _paligemma():
    # PaliGemma soft-caps its logits with the text config's final_logit_softcapping (PaliGemma 2's Gemma 2 config
    # has 30); a small cap here makes the lens's soft-cap visible to "readout = logits"
    text = tf.GemmaConfig(**TEXT)
    text.final_logit_softcapping = 0.5
    return tf.PaliGemmaForConditionalGeneration(tf.PaliGemmaConfig(
        text_config=text, vision_config=tf.SiglipVisionConfig(**SIGLIP), image_token_index=3, projection_dim=32))


def _mistral3():
    vision = tf.PixtralVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                    image_size=32, patch_size=8, head_dim=8)
    return tf.Mistral3ForConditionalGeneration(tf.Mistral3Config(
        text_config=tf.MistralConfig(**TEXT), vision_config=vision, image_token_index=3, spatial_merge_size=1))


#: Chameleon's 16 VQ codes as BPE tokens 80..95, named as its vocabulary names them ("IMGIMG" + code in letters A-J + "Z")
CHAMELEON_CODES = {"IMGIMG" + "".join("ABCDEFGHIJ"[int(d)] for d in str(code)) + "Z": 80 + code for code in range(16)}


def _chameleon():  # a 16x16 image is 16 VQ tokens (two downsamplings)
    vq = dict(embed_dim=32, num_embeddings=16, latent_channels=32, resolution=32, channel_multiplier=[1, 1, 1],
              base_channels=32)
    return tf.ChameleonForConditionalGeneration(tf.ChameleonConfig(
        **TEXT, vq_config=vq, vocabulary_map={"<image>": 3, **CHAMELEON_CODES}))


MLLAMA_IMAGE_TOKEN, MLLAMA_TILES = 3, 1


def _mllama():  # the matrix gives it an image (test_architectures.inputs_for): text only skips its cross-attention
    text = dict(TEXT, cross_attention_layers=[3], rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    text.pop("head_dim")
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1, num_attention_heads=4,
                  image_size=32, patch_size=8, max_num_tiles=MLLAMA_TILES, intermediate_layers_indices=[0],
                  vision_output_dim=64, supported_aspect_ratios=[[1, 1]])
    model = tf.MllamaForConditionalGeneration(tf.MllamaConfig(text_config=text, vision_config=vision,
                                                              image_token_index=MLLAMA_IMAGE_TOKEN))
    # its cross-attention gates start at 0 (tanh 0 = 0: the image would change nothing); open them
    for name, gate in model.named_parameters():
        if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
            torch.nn.init.constant_(gate, 1.0)
    return model


IDV = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=32, patch_size=8)

def _idefics2():
    model = tf.Idefics2ForConditionalGeneration(tf.Idefics2Config(
        text_config=tf.MistralConfig(**TEXT), vision_config=IDV, image_token_id=3,
        perceiver_config=dict(hidden_size=32, resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2,
                              resampler_head_dim=8, num_key_value_heads=1)))
    # its connector's default init (std 0.02) leaves the image almost no say in the logits (VCD would never act)
    for weight in (p for p in model.model.connector.parameters() if p.dim() == 2):
        torch.nn.init.normal_(weight, std=0.3)
    return model

def _idefics3():
    return tf.Idefics3ForConditionalGeneration(tf.Idefics3Config(
        text_config=tf.LlamaConfig(**TEXT), vision_config=IDV, image_token_id=3, scale_factor=2))

def _smolvlm():
    return tf.SmolVLMForConditionalGeneration(tf.SmolVLMConfig(
        text_config=tf.LlamaConfig(**TEXT), vision_config=IDV, image_token_id=3, scale_factor=2))

def _internvl():
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=[32, 32],
                  patch_size=[8, 8])
    return tf.InternVLForConditionalGeneration(tf.InternVLConfig(
        text_config=tf.Qwen2Config(**TEXT), vision_config=vision, image_token_id=3, image_seq_length=4))

def _aya_vision():
    return tf.AyaVisionForConditionalGeneration(tf.AyaVisionConfig(
        text_config=tf.Cohere2Config(**dict(TEXT, sliding_window=8)), vision_config=tf.SiglipVisionConfig(**SIGLIP),
        image_token_index=3, downsample_factor=2))

def _qwen3_vl():
    vision = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, patch_size=2, spatial_merge_size=1,
                  temporal_patch_size=1, out_hidden_size=32, num_position_embeddings=16, deepstack_visual_indexes=[0])
    return tf.Qwen3VLForConditionalGeneration(tf.Qwen3VLConfig(
        text_config=dict(TEXT, rope_parameters=dict(MROPE, mrope_interleaved=True)), vision_config=vision,
        **QWEN_TOKENS))

def _qwen3_5():
    vision = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, patch_size=2, spatial_merge_size=1,
                  temporal_patch_size=1, out_hidden_size=32, num_position_embeddings=16)
    return tf.Qwen3_5ForConditionalGeneration(tf.Qwen3_5Config(
        text_config=dict(TEXT, rope_parameters=dict(MROPE, mrope_interleaved=True), linear_key_head_dim=8, linear_value_head_dim=8,
                         linear_num_key_heads=2, linear_num_value_heads=2), vision_config=vision))

def _blip2():
    return tf.Blip2ForConditionalGeneration(tf.Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=8),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                            encoder_hidden_size=32, vocab_size=99),
        text_config=tf.OPTConfig(vocab_size=99, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                 num_attention_heads=4, word_embed_proj_dim=32, pad_token_id=0, bos_token_id=1,
                                 eos_token_id=2),
        num_query_tokens=4))


#: served classes (the matrix) and refused ones (checked to fail in one line at wrap)
SERVED = {
    "Llava": _llava,
    "LlavaNext": _llava_next,
    "LlavaOnevision": _llava_onevision,
    "VipLlava": _vipllava,
    "Qwen2VL": _qwen2_vl,
    "Qwen2_5_VL": _qwen2_5_vl,
    "Gemma3": _gemma3,
    "PaliGemma": _paligemma,
    "Mistral3": _mistral3,
    "Chameleon": _chameleon,
    "Idefics2": _idefics2,
    "Idefics3": _idefics3,
    "SmolVLM": _smolvlm,
    "InternVL": _internvl,
    "Qwen3VL": _qwen3_vl,
    "AyaVision": _aya_vision,
    "Mllama": _mllama,
}
#: refused at wrap in one line, with the reason (the test checks the refusal names the class)
REFUSED = {"Blip2": _blip2, "Qwen3_5": _qwen3_5}
#: served classes whose decoder has sliding-window layers: wrap refuses online skip2 on them (caches cannot be cropped)
SLIDING_WINDOW = {"Gemma3", "AyaVision"}


def build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    builder = {**SERVED, **REFUSED}[name]
    model = builder().double().eval()
    assert sum(p.numel() for p in model.parameters()) < 400_000, name
    return model


#: the transformers class each matrix name builds (the enumeration test checks these against the auto mapping)
def class_name(name: str) -> str:
    return "IdeficsForVisionText2Text" if name == "Idefics" else f"{name}ForConditionalGeneration"


_ENCODER_DECODER = "encoder-decoder (the text decoder cross-attends an encoder's states): not built in the matrix"
_NOT_WRITTEN = "not built: no tiny config written for it in the matrix yet"
#: image-text-to-text classes of transformers that the matrix does not build, each with the reason
NOT_BUILT = {
    **{c: _ENCODER_DECODER for c in ("Florence2ForConditionalGeneration", "Pix2StructForConditionalGeneration",
                                      "UdopForConditionalGeneration", "T5Gemma2ForConditionalGeneration",
                                      "VisionEncoderDecoderModel", "BlipForConditionalGeneration",
                                      "PPFormulaNetForConditionalGeneration")},
    "Llama4ForConditionalGeneration": "its stock generate fails on a tiny config (issue 22), so it cannot be judged",
    "DiffusionGemmaForBlockDiffusion": "block-diffusion decoding, not left-to-right generate",
    "EvollaForProteinText2Text": "protein-text, not an image model",
    "PI0ForConditionalGeneration": "vision-language-action policy, not text generation",
    "PI05ForConditionalGeneration": "vision-language-action policy, not text generation",
    "Apertus1p5ForConditionalGeneration": _NOT_WRITTEN,
    "AriaForConditionalGeneration": _NOT_WRITTEN,
    "Cohere2VisionForConditionalGeneration": _NOT_WRITTEN,
    "CohereCompassForConditionalGeneration": _NOT_WRITTEN,
    "Cosmos3EdgeForConditionalGeneration": _NOT_WRITTEN,
    "Cosmos3OmniForConditionalGeneration": _NOT_WRITTEN,
    "DeepseekOcr2ForConditionalGeneration": _NOT_WRITTEN,
    "DeepseekVLForConditionalGeneration": _NOT_WRITTEN,
    "DeepseekVLHybridForConditionalGeneration": _NOT_WRITTEN,
    "Dots3NoteForConditionalGeneration": _NOT_WRITTEN,
    "Emu3ForConditionalGeneration": _NOT_WRITTEN,
    "Ernie4_5_VLMoeForConditionalGeneration": _NOT_WRITTEN,
    "Exaone4_5_ForConditionalGeneration": _NOT_WRITTEN,
    "FastVlmForConditionalGeneration": _NOT_WRITTEN,
    "FuyuForCausalLM": _NOT_WRITTEN,
    "Gemma3nForConditionalGeneration": _NOT_WRITTEN,
    "Gemma4ForConditionalGeneration": _NOT_WRITTEN,
    "Gemma4UnifiedForConditionalGeneration": _NOT_WRITTEN,
    "GitForCausalLM": _NOT_WRITTEN,
    "Glm46VForConditionalGeneration": _NOT_WRITTEN,
    "Glm4vForConditionalGeneration": _NOT_WRITTEN,
    "Glm4vMoeForConditionalGeneration": _NOT_WRITTEN,
    "Glm5NextForConditionalGeneration": _NOT_WRITTEN,
    "GlmOcrForConditionalGeneration": _NOT_WRITTEN,
    "GotOcr2ForConditionalGeneration": _NOT_WRITTEN,
    "Granite4VisionForConditionalGeneration": _NOT_WRITTEN,
    "GraniteDoclingForConditionalGeneration": _NOT_WRITTEN,
    "HYV4VLForConditionalGeneration": _NOT_WRITTEN,
    "HunYuanVLForConditionalGeneration": _NOT_WRITTEN,
    "HyperCLOVAXVisionV2ForConditionalGeneration": _NOT_WRITTEN,
    "IdeficsForVisionText2Text": _NOT_WRITTEN,
    "Inkling2ForConditionalGeneration": _NOT_WRITTEN,
    "Inkling2LoopForConditionalGeneration": _NOT_WRITTEN,
    "InklingForConditionalGeneration": _NOT_WRITTEN,
    "InstructBlipForConditionalGeneration": _NOT_WRITTEN,
    "InstructBlipVideoForConditionalGeneration": _NOT_WRITTEN,
    "JanusForConditionalGeneration": _NOT_WRITTEN,
    "Kimi_K25ForConditionalGeneration": _NOT_WRITTEN,
    "Kosmos2ForConditionalGeneration": _NOT_WRITTEN,
    "Kosmos2_5ForConditionalGeneration": _NOT_WRITTEN,
    "Lfm2VlForConditionalGeneration": _NOT_WRITTEN,
    "Lfm3VlForConditionalGeneration": _NOT_WRITTEN,
    "LightOnOcrForConditionalGeneration": _NOT_WRITTEN,
    "LlavaNextVideoForConditionalGeneration": _NOT_WRITTEN,
    "LlavaOnevision15ForConditionalGeneration": _NOT_WRITTEN,
    "MiniCPMOcrForConditionalGeneration": _NOT_WRITTEN,
    "MiniCPMV4_6ForConditionalGeneration": _NOT_WRITTEN,
    "MiniCPMV4_7ForConditionalGeneration": _NOT_WRITTEN,
    "MiniMaxM3SparseForConditionalGeneration": _NOT_WRITTEN,
    "Mistral4ForCausalLM": _NOT_WRITTEN,
    "MistralLarge4ForConditionalGeneration": _NOT_WRITTEN,
    "Molmo2ForConditionalGeneration": _NOT_WRITTEN,
    "MuseGlimmerForConditionalGeneration": _NOT_WRITTEN,
    "MuseSparkForConditionalGeneration": _NOT_WRITTEN,
    "NemotronH_Omni_Reasoning_V3": _NOT_WRITTEN,
    "Ovis2ForConditionalGeneration": _NOT_WRITTEN,
    "Ovis2_5ForConditionalGeneration": _NOT_WRITTEN,
    "PaddleOCRVLForConditionalGeneration": _NOT_WRITTEN,
    "PerceptionLMForConditionalGeneration": _NOT_WRITTEN,
    "QianfanOCRForConditionalGeneration": _NOT_WRITTEN,
    "Qwen2_5OmniThinkerForConditionalGeneration": _NOT_WRITTEN,
    "Qwen3OmniMoeThinkerForConditionalGeneration": _NOT_WRITTEN,
    "Qwen3VLMoeForConditionalGeneration": _NOT_WRITTEN,
    "Qwen3_5MoeForConditionalGeneration": _NOT_WRITTEN,
    "Qwen4ExpForConditionalGeneration": _NOT_WRITTEN,
    "Step3p7ForConditionalGeneration": _NOT_WRITTEN,
    "UnlimitedOcrForConditionalGeneration": _NOT_WRITTEN,
    "VideoLlama3ForConditionalGeneration": _NOT_WRITTEN,
    "VideoLlavaForConditionalGeneration": _NOT_WRITTEN,
}

