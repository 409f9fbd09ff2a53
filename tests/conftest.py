"""Shared tiny models. Sizes are constructor arguments and every fixture asserts its parameter count,
so a misspelt config key can never silently give a full-size model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

TINY_LLAVA_LAYERS = 6
TINY_LLAMA_LAYERS = 4
TINY_LLAMA_VOCAB = 99


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class TinyLlava:
    model: torch.nn.Module
    processor: object
    image: object
    inputs: dict


@pytest.fixture(scope="session")
def tiny_llava() -> TinyLlava:
    """A random 6-layer LLaVA (Llama decoder, CLIP tower), a PIL image and the processor's inputs."""
    from PIL import Image

    from lvlm_skip.tiny import build_tiny_llava, llava_prompt

    model, processor = build_tiny_llava(num_layers=TINY_LLAVA_LAYERS)
    assert count_parameters(model) < 200_000, count_parameters(model)
    assert model.config.text_config.num_hidden_layers == TINY_LLAVA_LAYERS
    image = Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype("uint8"))
    inputs = processor(images=image, text=llava_prompt(processor, "describe this image ."), return_tensors="pt")
    return TinyLlava(model=model, processor=processor, image=image, inputs=dict(inputs))


def build_tiny_llama(num_layers: int = TINY_LLAMA_LAYERS, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=TINY_LLAMA_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    assert count_parameters(model) < 100_000, count_parameters(model)
    return model


@pytest.fixture(scope="session")
def tiny_llama():
    """A random 4-layer text-only ``LlamaForCausalLM`` (hidden 32, vocabulary 99)."""
    return build_tiny_llama()
