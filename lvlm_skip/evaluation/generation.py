"""Answering one request: an image and a prompt in, greedy text out, for one variant.

:func:`load_generator` loads the model once (:func:`lvlm_skip.inputs.models.load_model`) and returns a
:class:`ModelGenerator`, a callable ``generator(image, prompt, label) -> Generation``. It wraps the
model for the requested variant (``none`` is the stock model), formats the prompt with the
processor's chat template (:func:`lvlm_skip.inputs.models.chat_prompt`) and decodes greedily. Layer
numbers in the variants' options are checked against the model when it is loaded, before any
generation.

The runner looks :func:`load_generator` up at call time, so tests replace it (``monkeypatch``)
with a fake generator of the same signature; nothing else is needed to run an evaluation
without a model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import lvlm_skip  # the package's lazy names: wrap loads torch only when called

from ..errors import InputError, one_line
from .variants import VariantPlan, wrap_arguments

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    """One generated answer.

    Attributes:
        text: The decoded new tokens, stripped.
        new_tokens: Number of generated tokens.
        seconds: Wall time of ``generate`` (synchronised on CUDA), in seconds.
        layers_skipped: Mean decoder layers skipped per decoding step (0 for ``none``; ``None``: unknown).
    """

    text: str
    new_tokens: int
    seconds: float
    layers_skipped: float | None = None


class Generator(Protocol):
    """What the runner calls: ``generator(image, prompt, label) -> Generation``."""

    def __call__(self, image: Any, prompt: str, label: str) -> Generation: ...


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated (every field is part of the run's fingerprint except ``device_map``).

    Attributes:
        model: A local model folder or a built-in model name.
        device: Resolved device name (``cpu``, ``cuda``, ``cuda:1``).
        dtype: Resolved parameter dtype name (``float32``, ``bfloat16``, ``float16``).
        device_map: ``from_pretrained``'s ``device_map`` (shards a large model), or ``None``.
        max_new_tokens: Generation length limit (>= 1); decoding is greedy.
    """

    model: str
    device: str
    dtype: str
    device_map: str | None
    max_new_tokens: int

    def fingerprint(self) -> dict[str, Any]:
        """The answer-changing part: length limit, decoding, dtype, device type."""
        return {"max_new_tokens": self.max_new_tokens, "decoding": "greedy", "dtype": self.dtype,
                "device_type": self.device.split(":")[0]}


class ModelGenerator:
    """Greedy answers of a loaded model for each variant of a :class:`VariantPlan`.

    Args:
        model: A model loaded by :func:`lvlm_skip.inputs.models.load_model`.
        processor: Its processor.
        plan: The variants (and their options) that will be asked for.
        max_new_tokens: Generation length limit.

    Raises:
        InputError: an option the model rejects (a layer out of range), named with its variant.
    """

    def __init__(self, model: Any, processor: Any, plan: VariantPlan, max_new_tokens: int) -> None:
        self.model, self.processor, self.plan, self.max_new_tokens = model, processor, plan, max_new_tokens
        for spec in plan.specs:  # layer numbers are checked against the model before any generation
            if spec.variant != "none":
                self._wrap(spec.label)
                lvlm_skip.unwrap(model)
        self._label: str | None = None
        self._warm = False

    def _wrap(self, label: str) -> None:
        try:
            lvlm_skip.wrap(self.model, **wrap_arguments(self.plan, label))
        except (TypeError, ValueError) as exc:
            raise InputError(f"variant {label!r}: {one_line(exc)}") from None

    def _use(self, label: str) -> None:
        if label == self._label:
            return
        if lvlm_skip.is_wrapped(self.model):
            lvlm_skip.unwrap(self.model)
        self._label = None
        if self.plan.spec(label).variant != "none":
            self._wrap(label)
        self._label = label

    def __call__(self, image: Any, prompt: str, label: str) -> Generation:
        import torch  # on the --help import path, which loads no torch

        from ..inputs.models import chat_prompt, encode_inputs  # on the --help import path, which loads no torch

        self._use(label)
        inputs = encode_inputs(self.processor, [chat_prompt(self.processor, prompt, with_image=True)], [image], self.model)
        synchronize = torch.cuda.synchronize if self.model.device.type == "cuda" else (lambda: None)
        if not self._warm:  # one untimed call: the first variant must not pay the warm-up
            with torch.inference_mode():
                self.model.generate(**inputs, max_new_tokens=min(2, self.max_new_tokens), do_sample=False)
            self._warm = True
        synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        synchronize()
        seconds = time.perf_counter() - start
        skipped = 0.0 if self.plan.spec(label).variant == "none" else lvlm_skip.last_report(self.model).mean_layers_skipped()
        new = out[0, inputs["input_ids"].shape[1]:]
        text = self.processor.decode(new, skip_special_tokens=True).strip()
        return Generation(text=text, new_tokens=int(new.numel()), seconds=seconds, layers_skipped=float(skipped))


def load_generator(settings: GenerationSettings, plan: VariantPlan, progress: bool = False) -> Generator:
    """Load ``settings.model`` and return its :class:`ModelGenerator`.

    Raises:
        InputError: the model cannot be loaded (:class:`~lvlm_skip.inputs.models.ModelLoadError`), is not
            supported, or rejects a variant's options.
    """
    from ..inputs.models import load_model, resolve_device, resolve_dtype  # on the --help import path, which loads no torch

    device = resolve_device(settings.device)
    model, processor = load_model(settings.model, dtype=resolve_dtype(settings.dtype, device), device=device,
                                  device_map=settings.device_map, progress=progress)
    logger.info("loaded %s (%s, %s)", settings.model, model.device, model.dtype)
    return ModelGenerator(model, processor, plan, settings.max_new_tokens)
