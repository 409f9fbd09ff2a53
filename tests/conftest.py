"""Session fixtures of the tiny models (built by :mod:`tiny_models`, which asserts their parameter counts)
and test-wide patches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from tiny_models import make_llama, make_llava

TINY_LLAVA_LAYERS = 6
TINY_LLAMA_LAYERS = 4
TINY_LLAMA_VOCAB = 99


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

    model, processor = make_llava(TINY_LLAVA_LAYERS, limit=200_000)
    image = Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype("uint8"))
    inputs = processor(images=image, text=chat_prompt(processor, "describe this image ."), return_tensors="pt")
    return TinyLlava(model=model, processor=processor, image=image, inputs=dict(inputs))


@pytest.fixture(scope="session")
def tiny_llama():
    """A random 4-layer text-only ``LlamaForCausalLM`` (hidden 32, vocabulary 99, 256 positions)."""
    return make_llama(TINY_LLAMA_LAYERS, vocab=TINY_LLAMA_VOCAB, max_positions=256, limit=100_000)


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
