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

    from lvlm_skip.inputs.models import chat_prompt
    from lvlm_skip.inputs.builtin_models import build_tiny_llava

    model, processor = build_tiny_llava(num_layers=TINY_LLAVA_LAYERS)
    assert count_parameters(model) < 200_000, count_parameters(model)
    assert model.config.text_config.num_hidden_layers == TINY_LLAVA_LAYERS
    image = Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype("uint8"))
    inputs = processor(images=image, text=chat_prompt(processor, "describe this image ."), return_tensors="pt")
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


@pytest.fixture()
def use_generator(monkeypatch):
    """Replace the model of every evaluation by a function ``(image, prompt, label) -> Generation``.

    ``use_generator(fn)`` patches :func:`lvlm_skip.evaluation.generation.load_generator` (the runner
    looks it up at call time) and returns the list of :class:`GenerationSettings` it was loaded with.
    """
    from lvlm_skip.evaluation import generation

    def install(fn):
        loads = []

        def load_generator(settings, plan, progress=False):
            loads.append(settings)
            return fn

        monkeypatch.setattr(generation, "load_generator", load_generator)
        return loads

    return install


@pytest.fixture(autouse=True)
def _digest_cache(tmp_path_factory, monkeypatch):
    """File digests are cached in a per-session folder, never in the user's ~/.cache."""
    monkeypatch.setenv("LVLM_SKIP_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "digest-cache"))
