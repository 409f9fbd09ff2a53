"""Model loading and the ``generate_fn`` used by the evaluators.

``build_generate_fn`` returns ``generate_fn(image, prompt, variant) -> (text,
new_tokens, seconds)``: greedy decoding of one image + prompt with the model
switched to ``variant`` via ``lvlm_skip.wrap`` / ``lvlm_skip.unwrap`` (variant
``"none"`` is the stock model). ``seconds`` is the wall time of ``generate``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Prompt used when the processor has no chat template.
FALLBACK_TEMPLATE = "USER: <image>\n{query} ASSISTANT:"


def format_prompt(processor: Any, query: str) -> str:
    """Applies the processor's chat template to one image + ``query``, else :data:`FALLBACK_TEMPLATE`."""
    if getattr(processor, "chat_template", None):
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": query}]}]
        return processor.apply_chat_template(conversation, add_generation_prompt=True)
    return FALLBACK_TEMPLATE.format(query=query)


def _load_model(model_path: str, device_map: str | None) -> tuple[Any, Any]:
    import torch
    from transformers import AutoProcessor

    try:
        from transformers import AutoModelForImageTextToText as model_cls
    except ImportError:  # older transformers
        from transformers import LlavaForConditionalGeneration as model_cls
    dtype = torch.float16 if torch.cuda.is_available() else torch.float32
    processor = AutoProcessor.from_pretrained(model_path)
    model = model_cls.from_pretrained(model_path, dtype=dtype, device_map=device_map)
    model.eval()
    return processor, model


def build_generate_fn(model_path: str | Path, variants: list[str], mode: str = "static",
                      max_new_tokens: int = 512, device_map: str | None = "auto"):
    """Loads a local LLaVA-style model and returns its ``generate_fn``.

    Args:
        model_path: Local model folder (no hub download is attempted).
        variants: Variants that will be requested (checked up front).
        mode: ``lvlm_skip.wrap`` mode (``"static"`` or ``"online"``).
        max_new_tokens: Generation budget per item.
        device_map: Passed to ``from_pretrained`` (``"auto"``, ``"cpu"``, ...).

    Returns:
        ``generate_fn(image, prompt, variant) -> (text, new_tokens, seconds)``.

    Raises:
        RuntimeError: If a non-``none`` variant is requested but ``lvlm_skip.wrap``
            is not available.
    """
    import torch

    try:
        from lvlm_skip import unwrap, wrap
    except ImportError:
        wrap = unwrap = None
    if wrap is None and any(v != "none" for v in variants):
        raise RuntimeError("lvlm_skip.wrap/unwrap are not available; only variant 'none' can run")

    processor, model = _load_model(str(model_path), device_map)
    state = {"variant": "none"}

    def set_variant(variant: str) -> None:
        if variant == state["variant"]:
            return
        if state["variant"] != "none":
            unwrap(model)
        if variant != "none":
            wrap(model, variant=variant, mode=mode)
        state["variant"] = variant

    def generate_fn(image: Any, prompt: str, variant: str) -> tuple[str, int, float]:
        set_variant(variant)
        text = format_prompt(processor, prompt)
        inputs = processor(images=image, text=text, return_tensors="pt").to(model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        new = out[0, inputs["input_ids"].shape[1]:]
        return processor.decode(new, skip_special_tokens=True).strip(), int(new.numel()), seconds

    return generate_fn
