"""Load a local Hugging Face model folder (never the hub) and prepare its inputs, with one-line errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .anatomy import ModelAnatomy, UnsupportedModelError

logger = logging.getLogger(__name__)


class ModelLoadError(ValueError):
    """A model folder that cannot be loaded; the message is one line and says why."""


def is_vision_language(model) -> bool:
    """Whether ``model`` takes images (its config has a ``vision_config``)."""
    return getattr(model.config, "vision_config", None) is not None


def load_model(
    path: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    progress: bool = True,
):
    """Load ``(model, processor)`` from a local folder in HF format.

    Vision-language folders load with ``AutoModelForImageTextToText`` + ``AutoProcessor``
    (``llava-hf/llava-1.5-7b-hf`` and the project's own scene-llava); text-only ones with
    ``AutoModelForCausalLM`` + ``AutoTokenizer``. ``local_files_only=True``: nothing is downloaded.

    Args:
        path: The folder (with ``config.json``).
        dtype: Parameter dtype (``torch.float16``, ``"bfloat16"``, ...); default: the folder's own.
        device: Move the model there after loading (ignored with ``device_map``).
        device_map: Passed to ``from_pretrained`` (``"auto"`` shards a large model over GPUs / CPU).
        progress: Show transformers' loading progress bars.

    Returns:
        ``(model, processor)``, the model in eval mode; the processor is a tokenizer for text-only models.

    Raises:
        ModelLoadError: missing folder, no or unreadable ``config.json``, weights or processor that
            do not load.
        UnsupportedModelError: the architecture has no decoder layout that lvlm_skip supports.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = Path(path)
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {str(path)!r} does not exist (only local folders, no hub download)")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"model folder {str(path)!r} has no config.json")
    try:
        json.loads((folder / "config.json").read_text())
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - JSON, registry and key errors all become one line
        raise ModelLoadError(f"cannot read the config of {str(path)!r}: {_first_line(error)}") from None
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    vision = getattr(config, "vision_config", None) is not None
    model_class = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        model = model_class.from_pretrained(
            folder, config=config, local_files_only=True, dtype=dtype or "auto", device_map=device_map
        )
    except ValueError as error:
        if "Unrecognized configuration class" in str(error):
            raise UnsupportedModelError(
                f"unsupported model {type(config).__name__}: not a causal LM or image-text-to-text model"
            ) from None
        raise ModelLoadError(f"cannot load the model from {str(path)!r}: {_first_line(error)}") from None
    except Exception as error:  # noqa: BLE001 - missing or corrupt weights
        raise ModelLoadError(f"cannot load the model from {str(path)!r}: {_first_line(error)}") from None
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    ModelAnatomy.from_model(model)  # fail early, with the anatomy's message, on an unsupported layout
    try:
        processor = (AutoProcessor if vision else AutoTokenizer).from_pretrained(folder, local_files_only=True)
    except Exception as error:  # noqa: BLE001
        kind = "processor" if vision else "tokenizer"
        raise ModelLoadError(f"cannot load the {kind} of {str(path)!r}: {_first_line(error)}") from None
    if device is not None and device_map is None:
        model.to(device)
    model.eval()
    return model, processor


def chat_prompt(processor, question: str, with_image: bool = True) -> str:
    """The prompt text for one (image and) question.

    The processor's chat template when it has one (LLaVA-1.5 HF folders, scene-llava), else
    LLaVA-1.5's format ``"USER: <image>\\n{question} ASSISTANT:"``; for text-only models without a
    template, the question itself.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    if getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None):
        if with_image:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            return processor.apply_chat_template(messages, add_generation_prompt=True)
        messages = [{"role": "user", "content": question}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if with_image:
        image_token = getattr(processor, "image_token", None) or "<image>"
        return f"USER: {image_token}\n{question} ASSISTANT:"
    return question


def encode_inputs(processor, prompts: list[str], images: list | None, model) -> dict:
    """Processor outputs for a batch (left padding as the processor is set up), on the model's device.

    Pixel values are cast to the model's dtype.
    """
    if images is not None:
        inputs = processor(images=images, text=prompts, return_tensors="pt", padding=True)
    else:
        inputs = processor(prompts, return_tensors="pt", padding=True)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    return inputs


def _first_line(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 600 else text[:599] + "…"


__all__ = ["ModelLoadError", "UnsupportedModelError", "chat_prompt", "encode_inputs", "is_vision_language", "load_model"]
