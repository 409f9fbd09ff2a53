"""Variant specs, per-variant wrap options and the ``generate_fn`` used by the evaluators.

A *variant spec* is ``name`` or ``name:mode`` (``none``, ``skip2``, ``skip2:online``,
``exit:online``): ``name`` is one of ``lvlm_skip.VARIANTS``, ``mode`` one of
``lvlm_skip.MODES`` (default: the runner's ``--mode``). The spec as written is the
variant's *label*: the key of its results and its row in the reports.

*Variant options* are ``lvlm_skip.wrap`` keyword options per variant, keyed by variant
name (``"skip1"``) or by full label (``"skip1:online"``; it overrides the name's entry),
e.g. the paper's layers for LLaVA-1.5-7B::

    {"skip1": {"critical_layer": 18, "mutation_layers": [27, 28, 29, 30]},
     "skip2": {"mutation_layers": [27, 28, 29, 30]}, "skip3": {"critical_layer": 18}}

Variants without options calibrate their layers per prompt (static) or per step (online).

``build_generate_fn`` loads a local model with :func:`lvlm_skip.loading.load_model` and
returns ``generate_fn(image, prompt, label) -> (text, new_tokens, seconds,
layers_skipped)``: greedy decoding of one image + prompt with the model wrapped for that
label (``none`` is the stock model). ``seconds`` is the wall time of ``generate``
(the very first call is preceded by an untimed warm-up ``generate``);
``layers_skipped`` the mean number of decoder layers skipped per decoding step
(``lvlm_skip.last_report(model).mean_layers_skipped()``; 0 for ``none``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def format_prompt(processor: Any, query: str) -> str:
    """One image + ``query`` as a prompt: the processor's chat template, else LLaVA-1.5's format."""
    from lvlm_skip.loading import chat_prompt

    return chat_prompt(processor, query, with_image=True)


@dataclass(frozen=True)
class VariantSpec:
    """One requested variant.

    Attributes:
        label: The spec as written (``"skip2:online"``); keys results and report rows.
        variant: ``lvlm_skip`` variant name.
        mode: ``lvlm_skip.wrap`` mode.
    """

    label: str
    variant: str
    mode: str


def parse_variant_spec(spec: str, default_mode: str = "static") -> VariantSpec:
    """Parses ``name`` or ``name:mode``.

    Raises:
        ValueError: Unknown variant or mode, or a malformed spec (one-line message).
    """
    from lvlm_skip import MODES, VARIANTS

    label = spec.strip()
    name, sep, mode = label.partition(":")
    name, mode = name.strip(), (mode.strip() if sep else default_mode)
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r} in variant spec {label!r}; known: {', '.join(VARIANTS)}")
    if mode not in MODES or ":" in mode:
        raise ValueError(f"unknown mode {mode!r} in variant spec {label!r}; known: {', '.join(MODES)}")
    return VariantSpec(label=label, variant=name, mode=mode)


def parse_variant_specs(specs: str | Iterable[str], default_mode: str = "static") -> list[VariantSpec]:
    """Parses a comma-separated string (or a list) of specs; rejects an empty list and duplicate labels."""
    parts = specs.split(",") if isinstance(specs, str) else list(specs)
    parsed = [parse_variant_spec(p, default_mode) for p in parts if p.strip()]
    if not parsed:
        raise ValueError("no variant given; e.g. none,skip1,skip2:online")
    labels = [s.label for s in parsed]
    dupes = sorted({lb for lb in labels if labels.count(lb) > 1})
    if dupes:
        raise ValueError(f"duplicate variant spec(s) {', '.join(dupes)}")
    return parsed


def load_variant_options(text: str | None) -> dict[str, dict[str, Any]]:
    """Reads ``--variant-options``: a JSON object, or the path of a file holding one.

    Returns:
        ``{variant name or label: {wrap option: value}}`` (empty for ``None`` / ``""``).

    Raises:
        ValueError: Not JSON, not an existing file, or not an object of objects.
    """
    if not text or not text.strip():
        return {}
    source = "--variant-options"
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"--variant-options {text!r} is neither a JSON object nor an existing file")
        source, text = str(path), path.read_text(encoding="utf-8")
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: invalid JSON: {exc}") from None
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise ValueError(f"{source}: expected an object of objects, e.g. {{\"skip3\": {{\"critical_layer\": 18}}}}")
    return options


def resolve_variant_options(specs: Iterable[VariantSpec],
                            variant_options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Returns the wrap options of every spec, by label, checked against ``SkipConfig`` (no model needed).

    The entry of the variant name is overridden key by key by the entry of the full label.
    List values become tuples.

    Raises:
        ValueError: A key that is neither a variant name nor a requested label, an unknown option,
            or an invalid value (one-line message naming the label).
    """
    from lvlm_skip import VARIANTS, SkipConfig

    specs = list(specs)
    variant_options = dict(variant_options or {})
    labels = {s.label for s in specs}
    stray = sorted(k for k in variant_options if k not in VARIANTS and k not in labels)
    if stray:
        raise ValueError(f"variant options for {', '.join(stray)}: not a variant name nor a requested variant spec")
    resolved: dict[str, dict[str, Any]] = {}
    for spec in specs:
        opts = {**variant_options.get(spec.variant, {}), **variant_options.get(spec.label, {})}
        opts = {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}
        if spec.variant == "none" and opts:
            raise ValueError(f"variant {spec.label!r} takes no options (got {sorted(opts)})")
        try:
            SkipConfig.from_kwargs(variant=spec.variant, mode=spec.mode, **opts)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"variant {spec.label!r}: {str(exc).splitlines()[0]}") from None
        resolved[spec.label] = opts
    return resolved


def build_generate_fn(model_path: str | Path, variants: Iterable[str | VariantSpec], mode: str = "static",
                      max_new_tokens: int = 512, device_map: str | dict | None = "auto",
                      variant_options: Mapping[str, Mapping[str, Any]] | None = None,
                      dtype: Any = None):
    """Loads a local LLaVA-style model and returns its ``generate_fn``.

    Args:
        model_path: Local model folder (no hub download is attempted).
        variants: Variant specs (strings or :class:`VariantSpec`) that will be requested.
        mode: Mode of the specs that name none.
        max_new_tokens: Generation budget per item.
        device_map: Passed to ``from_pretrained`` (``"auto"`` also works on CPU, ``"cpu"``, ``"cuda:0"``).
        variant_options: Wrap options by variant name or label (see the module docstring).
        dtype: Parameter dtype; default float16 on a GPU, float32 otherwise.

    Returns:
        ``generate_fn(image, prompt, label) -> (text, new_tokens, seconds, layers_skipped)``.

    Raises:
        ValueError: Bad spec or options, or options the model rejects (e.g. a layer out of range);
            ``lvlm_skip.loading.ModelLoadError`` / ``UnsupportedModelError`` (both ``ValueError``)
            for a model folder that cannot be used. Messages are one line.
    """
    import torch

    import lvlm_skip
    from lvlm_skip.loading import load_model

    specs = [v if isinstance(v, VariantSpec) else parse_variant_spec(v, mode) for v in variants]
    options = resolve_variant_options(specs, variant_options)
    if dtype is None:
        dtype = torch.float16 if torch.cuda.is_available() else torch.float32
    model, processor = load_model(model_path, dtype=dtype, device_map=device_map)
    by_label = {s.label: s for s in specs}
    for spec in specs:  # layer numbers are checked against the model before any generation
        if spec.variant != "none":
            try:
                lvlm_skip.wrap(model, variant=spec.variant, mode=spec.mode, **options[spec.label])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"variant {spec.label!r}: {str(exc).splitlines()[0]}") from None
            lvlm_skip.unwrap(model)
    state: dict[str, Any] = {"label": None, "warm": False}

    def set_variant(label: str) -> VariantSpec:
        if label not in by_label:  # a spec not announced up front
            spec = parse_variant_spec(label, mode)
            options.update(resolve_variant_options([spec], variant_options))
            by_label[label] = spec
        spec = by_label[label]
        if label != state["label"]:
            if lvlm_skip.is_wrapped(model):
                lvlm_skip.unwrap(model)
            state["label"] = None
            if spec.variant != "none":
                lvlm_skip.wrap(model, variant=spec.variant, mode=spec.mode, **options[label])
            state["label"] = label
        return spec

    def generate_fn(image: Any, prompt: str, variant: str) -> tuple[str, int, float, float]:
        spec = set_variant(variant)
        text = format_prompt(processor, prompt)
        inputs = processor(images=image, text=text, return_tensors="pt").to(model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        if not state["warm"]:  # one untimed call: the first variant must not pay the warm-up
            with torch.inference_mode():
                model.generate(**inputs, max_new_tokens=min(2, max_new_tokens), do_sample=False)
            state["warm"] = True
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        skipped = 0.0 if spec.variant == "none" else lvlm_skip.last_report(model).mean_layers_skipped()
        new = out[0, inputs["input_ids"].shape[1]:]
        return processor.decode(new, skip_special_tokens=True).strip(), int(new.numel()), seconds, skipped

    return generate_fn
