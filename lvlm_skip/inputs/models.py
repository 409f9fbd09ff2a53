"""Models, devices, images and prompts: everything between a user's arguments and ``model.generate``.

* :func:`load_model`: a local Hugging Face folder (never the hub) or a built-in random model
  (:data:`BUILTIN_MODELS`), with one-line errors.
* :func:`resolve_device` / :func:`resolve_dtype`: ``"auto"`` and friends to torch objects.
* :func:`load_image`: an RGB PIL image from a file, with one-line errors (from :mod:`lvlm_skip.inputs.images`).
* :func:`chat_prompt` / :func:`encode_inputs`: the prompt text and the processor's tensors.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
from transformers.utils import logging as hf_logging

from ..anatomy import ModelAnatomy, UnsupportedModelError
from ..errors import InputError, one_line
from . import BUILTIN_MODELS
from . import builtin_models as tiny
from .images import load_image

logger = logging.getLogger(__name__)



class ModelLoadError(InputError):
    """A model folder that cannot be loaded; the message is one line and says why."""


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a :class:`torch.device`.

    Raises:
        InputError: an unknown name, or CUDA asked for where there is none.
    """
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} was asked for but no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def resolve_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """A dtype name (``"float32"``, ``"bfloat16"``, ``"float16"``) or ``"auto"``/None: float16 on CUDA, float32 on CPU."""
    if isinstance(name, torch.dtype):
        return name
    if name in (None, "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InputError(f"unknown dtype {name!r}; use auto, float32, bfloat16 or float16")
    return dtype


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
    """Load ``(model, processor)`` from a local folder in HF format, or build a built-in model.

    Vision-language folders load with ``AutoModelForImageTextToText`` + ``AutoProcessor``
    (``llava-hf/llava-1.5-7b-hf`` and the project's own scene-llava); text-only ones with
    ``AutoModelForCausalLM`` + ``AutoTokenizer``. ``local_files_only=True``: nothing is downloaded.
    The names of :data:`BUILTIN_MODELS` build random models offline (:mod:`lvlm_skip.inputs.builtin_models`):
    ``tiny`` (a 16-layer LLaVA, width 64), ``bench-llava`` (the CPU-scaled LLaVA-1.5-7B shape that
    ``lvlm-skip speed`` measures) and ``bench-llava-7b`` (the same edits on llava-1.5-7b-hf's full
    configuration, created directly on ``device``: for a GPU).

    Args:
        path: The folder (with ``config.json``), or a built-in name.
        dtype: Parameter dtype (``torch.float16``, ``"bfloat16"``, ``"auto"``, ...); default: the
            folder's own (built-in models: float32).
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
    if str(path) in BUILTIN_MODELS:
        return _builtin_model(str(path), dtype, device)
    folder = Path(path)
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {str(path)!r} does not exist (only local folders, no hub download)")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"model folder {str(path)!r} has no config.json")
    try:
        json.loads((folder / "config.json").read_text())
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - JSON, registry and key errors all become one line
        raise ModelLoadError(f"cannot read the config of {str(path)!r}: {one_line(error)}") from None
    if isinstance(dtype, str) and dtype != "auto":
        dtype = resolve_dtype(dtype, torch.device("cpu"))
    vision = getattr(config, "vision_config", None) is not None
    model_class = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        model, loading_info = model_class.from_pretrained(
            folder, config=config, local_files_only=True, dtype=dtype or "auto", device_map=device_map,
            output_loading_info=True,
        )
    except ValueError as error:
        if "Unrecognized configuration class" in str(error):
            raise UnsupportedModelError(
                f"unsupported model {type(config).__name__}: not a causal LM or image-text-to-text model"
            ) from None
        raise ModelLoadError(f"cannot load the model from {str(path)!r}: {one_line(error)}") from None
    except Exception as error:  # noqa: BLE001 - missing or corrupt weights
        raise ModelLoadError(f"cannot load the model from {str(path)!r}: {one_line(error)}") from None
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    ModelAnatomy.from_model(model)  # fail early, with the anatomy's message, on an unsupported layout
    check_loading_info(loading_info, str(path))
    try:
        processor = (AutoProcessor if vision else AutoTokenizer).from_pretrained(folder, local_files_only=True)
    except Exception as error:  # noqa: BLE001
        kind = "processor" if vision else "tokenizer"
        raise ModelLoadError(f"cannot load the {kind} of {str(path)!r}: {one_line(error)}") from None
    if device is not None and device_map is None:
        model.to(device)
    model.eval()
    return model, processor


def check_loading_info(loading_info: dict, path: str) -> None:
    """Refuse a model whose weights and config disagree: weights the model has no place for, or places no weight filled.

    transformers only reports these (its "UNEXPECTED" / "MISSING" table) and goes on with the
    config's layout, so a config that says 12 layers over weights of 16 would load as a 12-layer
    model, and missing weights would stay random.

    Args:
        loading_info: The dictionary ``from_pretrained(..., output_loading_info=True)`` returns.
        path: The model folder, for the message.

    Raises:
        ModelLoadError: unexpected, missing or mismatched weight keys (the message names the first few).
    """
    problems = []
    for key, what in (("unexpected_keys", "unexpected"), ("missing_keys", "missing"), ("mismatched_keys", "mismatched")):
        names = sorted(str(k[0] if isinstance(k, tuple) else k) for k in (loading_info.get(key) or ()))
        if names:
            shown = ", ".join(names[:3]) + (f", … ({len(names) - 3} more)" if len(names) > 3 else "")
            problems.append(f"{len(names)} {what} weight key(s): {shown}")
    if problems:
        raise ModelLoadError(
            f"the weights in {path!r} do not match its config.json ({'; '.join(problems)}): fix the config or the weights"
        )


def _builtin_model(name: str, dtype, device):
    target = resolve_device(device) if device is not None else torch.device("cpu")
    dtype = resolve_dtype(dtype, target) if dtype not in (None, "auto") else torch.float32
    if name == "tiny":
        model, processor = tiny.build_tiny_llava(num_layers=16, hidden_size=64, intermediate_size=128, dtype=dtype)
    elif name == "bench-llava":
        model, processor = tiny.build_bench_llava(dtype=dtype)
    else:  # bench-llava-7b: built where it will run (14 GB in float16)
        model, processor = tiny.build_bench_llava(dtype=dtype, shape="7b", device=target)
    return model.to(target), processor


def tokenizer_of(processor):
    """The tokenizer of a processor (its ``.tokenizer``), or the argument itself when it is a tokenizer."""
    return getattr(processor, "tokenizer", processor)


def chat_prompt(processor, question: str, with_image: bool = True) -> str:
    """The prompt text for one (image and) question.

    The processor's chat template when it has one (LLaVA-1.5 HF folders, scene-llava), else
    LLaVA-1.5's format ``"USER: <image>\\n{question} ASSISTANT:"``; for text-only models without a
    template, the question itself. ``with_image=False`` on a vision-language processor is its own chat format
    with a text-only message (``"USER: {question} ASSISTANT:"`` for LLaVA-1.5): a multimodal template reads a
    message's content as a list of typed parts, a text model's template as a string.
    """
    tokenizer = tokenizer_of(processor)
    if getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None):
        if with_image:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            return processor.apply_chat_template(messages, add_generation_prompt=True)
        multimodal = processor is not tokenizer
        content = [{"type": "text", "text": question}] if multimodal else question
        messages = [{"role": "user", "content": content}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if with_image:
        image_token = getattr(processor, "image_token", None) or "<image>"
        return f"USER: {image_token}\n{question} ASSISTANT:"
    return question


def encode_inputs(processor, prompts: list[str], images: list | None, model) -> dict:
    """Processor outputs for a batch, padded on the left, on the model's device.

    Left padding whatever the processor is set to (its setting is restored): generation continues
    from every row's own last token. Pixel values are cast to the model's dtype.
    """
    tokenizer = tokenizer_of(processor)
    side = getattr(tokenizer, "padding_side", None)
    if side is not None:
        tokenizer.padding_side = "left"
    try:
        if images is not None:
            inputs = processor(images=images, text=prompts, return_tensors="pt", padding=True)
        else:
            inputs = processor(prompts, return_tensors="pt", padding=True)
    finally:
        if side is not None:
            tokenizer.padding_side = side
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    return inputs


__all__ = [
    "BUILTIN_MODELS", "ModelLoadError", "UnsupportedModelError", "chat_prompt", "encode_inputs", "is_vision_language",
    "load_image", "load_model", "resolve_device", "resolve_dtype",
]
