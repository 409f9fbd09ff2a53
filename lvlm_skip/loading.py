"""Load a local Hugging Face model folder (never the hub) with clear one-line errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .anatomy import ModelAnatomy, UnsupportedModelError

logger = logging.getLogger(__name__)


class ModelLoadError(ValueError):
    """A model folder that cannot be loaded; the message is one line and says why."""


def load_model(
    path: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
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

    Returns:
        ``(model, processor)``, the model in eval mode; the processor is a tokenizer for text-only models.

    Raises:
        ModelLoadError: missing folder, no or unreadable ``config.json``, weights that do not load.
        UnsupportedModelError: the architecture has no decoder layout that lvlm_skip supports.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    folder = Path(path)
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {folder} does not exist (only local folders are supported, no hub download)")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{folder} is not a Hugging Face model folder: no config.json")
    try:
        json.loads(config_file.read_text())
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - any parse / registry error becomes one line
        raise ModelLoadError(f"cannot read {config_file}: {_first_line(error)}") from None
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    is_vlm = getattr(config, "vision_config", None) is not None
    kwargs = dict(local_files_only=True, dtype=dtype or "auto", device_map=device_map)
    try:
        if is_vlm:
            model = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
            processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
            processor = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except ValueError as error:
        if "Unrecognized configuration class" in str(error):
            raise UnsupportedModelError(
                f"unsupported architecture {getattr(config, 'architectures', None) or config.model_type}: "
                "not a causal LM or image-text-to-text model"
            ) from None
        raise ModelLoadError(f"cannot load the model in {folder}: {_first_line(error)}") from None
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(f"cannot load the model in {folder}: {_first_line(error)}") from None
    ModelAnatomy.from_model(model)  # fail early, with the anatomy's message, on an unsupported layout
    if device is not None and device_map is None:
        model.to(device)
    model.eval()
    return model, processor


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


__all__ = ["ModelLoadError", "UnsupportedModelError", "load_model"]
