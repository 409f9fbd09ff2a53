"""A Fig. 5 run: check every input, generate what ``results.json`` lacks, write the tables.

Order of work, so that bad input costs nothing:

1. the output folder (:func:`lvlm_skip.inputs.paths.check_output_dir`), the layers
   (:func:`~recipes.fig5.layers.resolve_layers`), the images, the device and the model folder;
2. ``results.json``: the finished images of the same settings (:class:`~recipes.fig5.results.ResultsFile`);
3. the model, loaded only if something is missing, and the layers checked against its depth;
4. per image, each missing variant's description and (unless ``--no-analysis``) the original
   model's trace and figures, ``results.json`` rewritten after each image;
5. the Markdown and HTML tables of the requested variants.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lvlm_skip.errors import InputError, one_line

from . import generation, tables
from .inputs import InputImage, default_images, given_images
from .layers import Fig5Layers, resolve_layers
from .results import ImageResult, ResultsFile, RunSettings

logger = logging.getLogger("recipes.fig5")


def run(args: argparse.Namespace, progress: bool = False) -> list[ImageResult]:
    """Run the experiment for ``args.variants``; returns the results in table order.

    Raises:
        InputError: bad input (one line), before the model is loaded wherever it can be checked before.
    """
    from lvlm_skip.inputs.models import resolve_device
    from lvlm_skip.inputs.paths import check_output_dir

    # 1. everything that can be checked without the model
    out = check_output_dir(args.out)
    layers = resolve_layers(args.variants, mode=args.mode, positions=args.positions, critical=args.critical,
                            mutation=args.mutation, keep_last=args.keep_last, preset=args.preset, profile=args.profile)
    images = given_images(args.images) if args.images else default_images(out / "images")
    device = resolve_device(args.device)
    settings = run_settings(args, layers, device.type)
    depth = config_depth(args.model)
    if depth is not None:
        layers.check_depth(depth)
    results = ResultsFile.open(out, settings, layers.to_dict(), overwrite=args.overwrite)
    if layers.measured_per_prompt:
        logger.info("no layers given (--critical/--mutation, --profile or --preset): static mode measures c and M on "
                    "each prompt's last position; a profile (`lvlm-skip profile`) measures them over many tokens")
    logger.info("layers: %s", layers.describe())

    # 2. the model work that results.json lacks
    ordered = _generate_missing(args, layers, images, results, device, progress)

    # 3. the tables
    name = tables.table_name(layers.variants)
    caption = tables.caption(layers.variants, args.model, args.prompt, layers.describe())
    (out / f"{name}.md").write_text(tables.markdown_table(ordered, layers.variants, caption, out, args.show_deleted))
    (out / f"{name}.html").write_text(tables.html_table(ordered, layers.variants, caption, args.show_deleted))
    logger.info("wrote %s, %s and %s", results.path, out / f"{name}.md", out / f"{name}.html")
    return ordered


def run_settings(args: argparse.Namespace, layers: Fig5Layers, device_type: str) -> RunSettings:
    """The settings that change the descriptions (a folder's results are reused only under equal settings).

    Raises:
        InputError: the model folder does not exist or has no ``config.json``.
    """
    from lvlm_skip.evaluation.fingerprint import file_sha256, model_identity, package_versions
    from lvlm_skip.inputs.models import BUILTIN_MODELS

    if args.model not in BUILTIN_MODELS and Path(args.model).is_dir() and not (Path(args.model) / "config.json").is_file():
        raise InputError(f"model folder {args.model!r} has no config.json (a local Hugging Face folder, or one of "
                         f"{', '.join(BUILTIN_MODELS)})")
    identity = model_identity(args.model, BUILTIN_MODELS)
    return RunSettings(
        model=args.model, model_sha256=identity["model_sha256"], prompt=args.prompt, max_new_tokens=args.max_new_tokens,
        device_type=device_type, mode=layers.mode, positions=layers.positions, critical=layers.critical,
        mutation=layers.mutation, keep_last=layers.keep_last, profile=layers.profile,
        profile_sha256=file_sha256(Path(layers.profile)) if layers.profile else None,
        versions=package_versions(), model_files=identity.get("model_files", {}),
    )


def config_depth(model_name: str) -> int | None:
    """The decoder depth in a model folder's ``config.json`` (no weights read); ``None`` for a built-in model.

    Raises:
        InputError: the config cannot be read.
    """
    from lvlm_skip.inputs.models import BUILTIN_MODELS, ModelLoadError

    if model_name in BUILTIN_MODELS:
        return None
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_name, local_files_only=True)
        return int(config.get_text_config().num_hidden_layers)
    except Exception as error:  # noqa: BLE001 - JSON, registry and key errors all become one line
        raise ModelLoadError(f"cannot read the config of {model_name!r}: {one_line(error)}") from None


def _generate_missing(args, layers: Fig5Layers, images: list[InputImage], results: ResultsFile, device,
                      progress: bool) -> list[ImageResult]:
    """Describe what ``results`` lacks, variant by variant in batches of ``--batch-size`` images (saved after
    every batch), then trace the images that lack their analysis."""
    from tqdm.auto import tqdm

    from lvlm_skip.inputs.models import load_image

    wanted = ("none", *layers.variants)
    found = {image.stem: results.finished(image.stem, image.sha256) for image in images}
    for image in images:
        found[image.stem] = found[image.stem] or ImageResult(stem=image.stem, path=image.path.as_posix(),
                                                             image_sha256=image.sha256, truth=image.truth)
    missing = {v: [i for i in images if v not in found[i.stem].variants] for v in wanted}
    todo = sum(len(m) for m in missing.values())
    bar = tqdm(total=todo, desc="images x variants", disable=not progress or todo == 0)
    loaded: list = []

    def model_and_processor():
        if not loaded:
            loaded.extend(_load(args.model, device, layers))
        return loaded

    size = getattr(args, "batch_size", 1) or 1
    for variant, pending in missing.items():
        for start in range(0, len(pending), size):
            chunk = pending[start:start + size]
            model, processor = model_and_processor()
            bar.set_postfix_str(f"{variant} {', '.join(i.stem for i in chunk)}")
            inputs = generation.encode_batch(processor, model, [load_image(i.path) for i in chunk], args.prompt)
            described = generation.describe_batch(model, processor, inputs, variant, layers.wrap_options(variant),
                                                  args.max_new_tokens)
            for image, result in zip(chunk, described):
                found[image.stem].variants[variant] = result
                results.images[image.stem] = found[image.stem]
            results.save()  # after every batch: a stopped run keeps what it described
            bar.update(len(chunk))
    bar.close()
    for image in images:
        result = found[image.stem]
        if not args.no_analysis and not result.analysis:
            model, processor = model_and_processor()
            inputs = generation.encode(processor, model, load_image(image.path), args.prompt)
            result.analysis = generation.analyse(model, processor, inputs, results.path.parent / "analysis" / image.stem,
                                                 args.max_new_tokens)
            results.images[image.stem] = result
            results.save()
    return [found[image.stem] for image in images]


def _load(model_name: str, device, layers: Fig5Layers):
    """``(model, processor)`` without loading bars, the layers checked against the model's depth."""
    from lvlm_skip import ModelAnatomy
    from lvlm_skip.inputs.models import load_model

    model, processor = load_model(model_name, device=device, progress=False)
    layers.check_model(ModelAnatomy.from_model(model))
    return model, processor
