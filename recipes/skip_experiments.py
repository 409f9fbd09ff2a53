"""The paper's skip experiments (Sec. 4.2, Fig. 5): original vs skip.1 / skip.2 / skip.3 descriptions.

For each image the model greedily describes it once as is (``none``) and once per skip variant,
each through ``lvlm_skip.wrap(model, variant=..., mode=...)`` around the model's own ``generate``:

* skip.1 (``skip1``): jump from the critical layer ``c`` to the first mutation layer ``m``
  (skips ``c+1 .. m-1``, the stabilization stage);
* skip.2 (``skip2``): skip only the mutation layers;
* skip.3 (``skip3``): jump from ``c`` to the last ``keep_last`` (5) layers (skips ``c+1 .. L-5``).

Layers are given (``--critical C --mutation M1,M2``, or a ``--preset``) or, when omitted, calibrated
once per prompt by ``lvlm_skip`` (static calibrated mode: one extra decoder pass over the prompt,
see :mod:`lvlm_skip.skipping`); ``--mode online`` decides at every step instead.

Outputs in ``--out`` (written as they are produced; a rerun skips the images already done):

* ``fig5_skip_table.md`` / ``.html``: Fig. 5 as a table, image | original | skip.1 | skip.2 | skip.3,
  words that differ from the original marked (Markdown: **inserted/changed**, and with
  ``--show-deleted`` ~~dropped~~; HTML: ``<ins>`` / ``<del>``; the HTML embeds its thumbnails), and the
  layers each variant skipped.
  The single-variant entry points (``recipes.skip1`` ...) write ``skip1_table.md`` / ``.html``.
* ``results.json``: settings, and per image the texts, skipped layers and calibration.
* ``analysis/<image-stem>/``: the original model's trace (``lvlm_skip.trace``) with the token
  probability (Fig. 2/3) and JSD heatmap (Fig. 4) figures.
* ``images/``: the default generated scenes as PNG.

    python -m recipes.skip_experiments --preset llava-1.5-7b --model /models/llava-1.5-7b-hf --images a.jpg b.jpg
    python -m recipes.skip_experiments --critical 4 --mutation 12,13 --keep-last 3   # scene-llava, 4 scenes
"""

from __future__ import annotations

import argparse
import base64
import difflib
import html
import io
import json
import logging
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger("recipes.skip_experiments")

DEFAULT_MODEL = "recipes/models/scene-llava"
DEFAULT_OUT = "runs/skip_experiments"
DEFAULT_PROMPT = "Please describe this image in detail."
"""The paper's caption prompt; scene-llava is trained on it too (``lvlm_skip.scenes.CAPTION_PROMPTS``)."""
SKIP_VARIANTS = ("skip1", "skip2", "skip3")
COLUMN_TITLES = {"none": "original", "skip1": "skip.1", "skip2": "skip.2", "skip3": "skip.3"}
DEFAULT_SCENES = (("test-consistent", 2), ("test-breaking", 2))
"""Default images: generated scenes whose colours follow the training prior, and scenes that break it."""
SCENE_SEED = 0
THUMBNAIL_PX = 160
ANALYSIS_FIGURES = ("fig2_token_probabilities", "fig4_jsd_heatmap")


@dataclass(frozen=True)
class LayerPreset:
    """Layer choices for a known model (1-based layers, as in the paper)."""

    num_layers: int
    """Decoder depth the preset is for (checked against the model)."""
    critical: int
    """Critical layer ``c``."""
    mutation: tuple[int, ...]
    """Mutation layers (skip.2 skips them; skip.1 resumes at the first)."""
    keep_last: int = 5
    """skip.3 keeps this many final layers (the paper: 5)."""
    note: str = ""


PRESETS = {
    "llava-1.5-7b": LayerPreset(
        num_layers=32, critical=18, mutation=(27, 28, 29, 30),
        note="paper: critical layers 16-20 (Fig. 4), mutation layers 26-30, last 5 layers kept"),
    "llava-1.5-13b": LayerPreset(
        num_layers=40, critical=22, mutation=(34, 35, 36, 37, 38),
        note="scaling assumption: the paper gives no layers for 13B; the 7B choices scaled by 40/32"),
}


class RecipeError(Exception):
    """A user error: reported as one line, exit status 2."""


# ------------------------------------------------------------------------------------ results


@dataclass
class VariantResult:
    """One generated description and what the intervention did.

    Attributes:
        text: The generated text.
        num_tokens: Generated tokens.
        seconds: Wall time of ``generate``.
        skipped_step0: Layers skipped at step 0 (the prefill's last position).
        skipped_any: Layers skipped at some step.
        mean_skipped: Mean number of skipped layers per step.
        calibration: Critical / mutation layers measured at the prefill (calibrated modes), else ``{}``.
    """

    text: str
    num_tokens: int
    seconds: float
    skipped_step0: list[int] = field(default_factory=list)
    skipped_any: list[int] = field(default_factory=list)
    mean_skipped: float = 0.0
    calibration: dict = field(default_factory=dict)


@dataclass
class ImageResult:
    """All variants of one image. ``truth`` is the scene's ground-truth caption (generated scenes only)."""

    stem: str
    path: str
    truth: str | None = None
    variants: dict[str, VariantResult] = field(default_factory=dict)
    analysis: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "ImageResult":
        variants = {k: VariantResult(**v) for k, v in data.get("variants", {}).items()}
        return cls(stem=data["stem"], path=data["path"], truth=data.get("truth"), variants=variants,
                   analysis=data.get("analysis", {}))


# ------------------------------------------------------------------------------------ word diff


_WORD = re.compile(r"\S+")


def diff_words(reference: str, text: str) -> list[tuple[str, str]]:
    """Word-level diff of ``text`` against ``reference`` (difflib).

    Returns:
        ``(op, word)`` pairs in reading order: ``"equal"`` (in both), ``"insert"`` (in ``text`` only:
        inserted or changed words) and ``"delete"`` (in ``reference`` only, placed before the words
        that replaced them).
    """
    old, new = _WORD.findall(reference), _WORD.findall(text)
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "equal":
            out += [("equal", w) for w in new[j1:j2]]
            continue
        out += [("delete", w) for w in old[i1:i2]]
        out += [("insert", w) for w in new[j1:j2]]
    return out


def _md_escape(word: str) -> str:
    return re.sub(r"([\\`*_~|<>\[\]])", r"\\\1", word)


def markdown_diff(reference: str, text: str, show_deleted: bool = True) -> str:
    """``text`` with inserted/changed words in **bold** and (optionally) dropped ones ~~struck~~."""
    parts = []
    for op, word in diff_words(reference, text):
        if op == "insert":
            parts.append(f"**{_md_escape(word)}**")
        elif op == "delete" and show_deleted:
            parts.append(f"~~{_md_escape(word)}~~")
        elif op == "equal":
            parts.append(_md_escape(word))
    return " ".join(parts)


def html_diff(reference: str, text: str, show_deleted: bool = True) -> str:
    """``text`` as HTML with ``<ins>`` for inserted/changed words and ``<del>`` for dropped ones."""
    parts = []
    for op, word in diff_words(reference, text):
        if op == "insert":
            parts.append(f"<ins>{html.escape(word)}</ins>")
        elif op == "delete" and show_deleted:
            parts.append(f"<del>{html.escape(word)}</del>")
        elif op == "equal":
            parts.append(html.escape(word))
    return " ".join(parts)


def format_layers(layers: list[int]) -> str:
    """``[5, 6, 7, 8, 12, 13]`` -> ``"5-8, 12, 13"`` (runs of three or more collapsed)."""
    if not layers:
        return "none"
    runs, start = [], None
    layers = sorted(layers)
    for i, layer in enumerate(layers):
        start = layer if start is None else start
        if i + 1 == len(layers) or layers[i + 1] != layer + 1:
            runs.append(f"{start}-{layer}" if layer - start >= 2 else ", ".join(map(str, range(start, layer + 1))))
            start = None
    return ", ".join(runs)


def skip_summary(result: VariantResult) -> str:
    """One line: what a variant skipped."""
    text = f"skipped {format_layers(result.skipped_step0)} at step 0, {result.mean_skipped:.1f} layers/step"
    if set(result.skipped_any) != set(result.skipped_step0):
        text += f"; at some step: {format_layers(result.skipped_any)}"
    calibration = result.calibration
    if calibration:
        text += f"; calibrated c={calibration.get('critical')}, M={format_layers(calibration.get('mutation') or [])}"
    return text


# ------------------------------------------------------------------------------------ tables


def _columns(variants: tuple[str, ...]) -> list[str]:
    return ["none", *variants]


def markdown_table(results: list[ImageResult], variants: tuple[str, ...], settings: dict, out: Path,
                   show_deleted: bool = False) -> str:
    """Fig. 5 as a Markdown table (thumbnails as relative ``<img>`` links into ``images/``)."""
    from lvlm_skip.evaluation.report import markdown_table as table

    cols = _columns(variants)
    rows = []
    for r in results:
        image = f'<img src="{_relative_image(r, out)}" width="{THUMBNAIL_PX // 2}"><br>{_md_escape(r.stem)}'
        if r.truth:
            image += f"<br>truth: {_md_escape(r.truth)}"
        original = r.variants["none"].text
        cells = [image, _md_escape(original) or "(empty)"]
        for v in variants:
            res = r.variants[v]
            cells.append(f"{markdown_diff(original, res.text, show_deleted) or '(empty)'}<br>*{skip_summary(res)}*")
        rows.append(cells)
    heading = (
        f"# Skip connections (Fig. 5): {', '.join(COLUMN_TITLES[v] for v in variants)}\n\n"
        f"Model `{settings['model']}`, prompt \"{settings['prompt']}\", mode {settings['mode']}, "
        f"{_layer_settings_text(settings)}. Words that differ from the original: **inserted or changed**"
        + (", ~~dropped~~." if show_deleted else ".")
    )
    return heading + "\n\n" + table(rows, headers=["image", *(COLUMN_TITLES[v] for v in cols)], pad=False) + "\n"


def _relative_image(r: ImageResult, out: Path) -> str:
    path = Path(r.path)
    try:
        return path.resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _layer_settings_text(settings: dict) -> str:
    if settings["critical"] is None and settings["mutation"] is None:
        return f"layers calibrated per prompt, keep_last {settings['keep_last']}"
    return (f"critical {settings['critical'] or 'calibrated'}, mutation "
            f"{format_layers(settings['mutation']) if settings['mutation'] else 'calibrated'}, "
            f"keep_last {settings['keep_last']}" + (f" (preset {settings['preset']})" if settings.get("preset") else ""))


def _thumbnail_data_uri(path: str) -> str:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_CSS = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #bbb; padding: 6px 8px; vertical-align: top; max-width: 26em; }
th { background: #f0f0f0; }
ins { background: #d4f7d4; color: #075e07; text-decoration: none; font-weight: bold; }
del { background: #fbdada; color: #9b1c1c; }
.skip { color: #555; font-size: 0.85em; margin-top: 0.5em; }
.truth { color: #555; font-size: 0.85em; }
"""


def html_table(results: list[ImageResult], variants: tuple[str, ...], settings: dict, show_deleted: bool = False) -> str:
    """Fig. 5 as a self-contained HTML page (thumbnails embedded as base64 data URIs)."""
    cols = _columns(variants)
    head = "".join(f"<th>{html.escape(COLUMN_TITLES[v])}</th>" for v in cols)
    rows = []
    for r in results:
        image = f'<img src="{_thumbnail_data_uri(r.path)}" alt="{html.escape(r.stem)}"><br>{html.escape(r.stem)}'
        if r.truth:
            image += f'<div class="truth">truth: {html.escape(r.truth)}</div>'
        original = r.variants["none"].text
        cells = [image, html.escape(original)]
        for v in variants:
            res = r.variants[v]
            cells.append(f'{html_diff(original, res.text, show_deleted)}<div class="skip">{html.escape(skip_summary(res))}</div>')
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    title = f"Skip connections (Fig. 5): {', '.join(COLUMN_TITLES[v] for v in variants)}"
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
        f"<p>Model <code>{html.escape(settings['model'])}</code>, prompt &ldquo;{html.escape(settings['prompt'])}&rdquo;, "
        f"mode {html.escape(settings['mode'])}, {html.escape(_layer_settings_text(settings))}. "
        "Words that differ from the original: <ins>inserted or changed</ins>"
        + (", <del>dropped</del>.</p>\n" if show_deleted else ".</p>\n")
        + f"<table><tr><th>image</th>{head}</tr>\n" + "\n".join(rows) + "\n</table></body></html>\n"
    )


# ------------------------------------------------------------------------------------ inputs


def check_image(path: Path) -> None:
    """Raise :class:`RecipeError` unless ``path`` is a readable image."""
    from lvlm_skip.errors import InputError
    from lvlm_skip.images import load_image

    try:
        load_image(path)
    except InputError as error:
        raise RecipeError(str(error)) from None


def default_images(out: Path) -> list[tuple[Path, str]]:
    """Generate the default scenes as PNG under ``out/images``; ``(path, ground-truth caption)`` each."""
    from lvlm_skip.scenes import SPLITS, generate

    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for split, n in DEFAULT_SCENES:
        if split not in SPLITS:  # a renamed split: fall back to the plain test split
            split = "test"
        for scene in generate(split, SCENE_SEED, n):
            path = folder / f"scene-{split}-{scene.index}.png"
            if not path.is_file():
                scene.image.save(path)
            images.append((path, scene.caption()))
    return images


def _unique_stems(paths: list[Path]) -> list[str]:
    stems, seen = [], {}
    for path in paths:
        stem = path.stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def parse_layers(text: str) -> tuple[int, ...]:
    """``"27,28,29,30"`` or ``"27-30"`` -> ``(27, 28, 29, 30)``."""
    layers: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                layers += range(lo, hi + 1)
            else:
                layers.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layers like 27,28,29,30 or 27-30, got {text!r}") from None
    if not layers:
        raise argparse.ArgumentTypeError("no layers given")
    return tuple(sorted(set(layers)))


# ------------------------------------------------------------------------------------ model work


def load(model_path: str, device: str):
    """``(model, processor)`` from a local folder, with the user-facing errors of this recipe."""
    import lvlm_skip

    folder = Path(model_path)
    if not (folder / "config.json").is_file():
        if folder.resolve() == Path(DEFAULT_MODEL).resolve():
            raise RecipeError(f"no trained model in {DEFAULT_MODEL} yet: train it with `python -m "
                              "recipes.train_scene_llava` (see its model card), or pass --model PATH")
        raise RecipeError(f"model folder {model_path!r} does not exist or has no config.json; pass --model PATH "
                          "(a local Hugging Face folder)")
    from lvlm_skip.errors import InputError
    from lvlm_skip.loading import resolve_device

    try:
        model, processor = lvlm_skip.load_model(folder, device=resolve_device(device))
    except InputError as error:  # a model that cannot be loaded or used, a device that does not exist
        raise RecipeError(str(error)) from None
    return model, processor


def encode_image(processor, model, image_path: str, prompt: str) -> dict:
    """The processor's inputs for one image and one prompt (LLaVA-1.5 chat format), on the model's device."""
    from lvlm_skip.loading import chat_prompt, encode_inputs, load_image

    image = load_image(image_path)
    return encode_inputs(processor, [chat_prompt(processor, prompt, with_image=True)], [image], model)


def generate_text(model, processor, inputs: dict, variant: str, options: dict, max_new_tokens: int) -> VariantResult:
    """Greedy description with ``lvlm_skip.wrap(model, variant=..., **options)``; the model is unwrapped after."""
    import lvlm_skip

    wrap_options = options if variant != "none" else {"mode": options["mode"]}
    from lvlm_skip.errors import one_line

    try:
        lvlm_skip.wrap(model, variant=variant, **wrap_options)
    except (ValueError, TypeError) as error:
        raise RecipeError(f"{variant}: {one_line(error)}") from None
    try:
        start = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        seconds = time.perf_counter() - start
        report = lvlm_skip.last_report(model)
    finally:
        lvlm_skip.unwrap(model)
    new = out[0, inputs["input_ids"].shape[1]:]
    text = processor.decode(new, skip_special_tokens=True).strip()
    steps = report.num_steps
    skipped_any = sorted({j for t in range(steps) for j in report.skipped_layers(t)})
    calibration = report.calibration[0] if report.calibration else {}
    return VariantResult(
        text=text, num_tokens=int(new.numel()), seconds=round(seconds, 3),
        skipped_step0=report.skipped_layers(0) if steps else [], skipped_any=skipped_any,
        mean_skipped=round(report.mean_layers_skipped(), 3), calibration=_jsonable(calibration))


def analyse(model, processor, inputs: dict, folder: Path, max_new_tokens: int) -> dict:
    """Trace the original model and draw Fig. 2/3 and Fig. 4 into ``folder``; a summary for results.json."""
    import numpy as np

    import lvlm_skip
    from lvlm_skip import figures

    result = lvlm_skip.trace(model, inputs, processor=processor, max_new_tokens=max_new_tokens)
    folder.mkdir(parents=True, exist_ok=True)
    result.save(folder)
    paths = figures.plot_token_probabilities(result, folder / ANALYSIS_FIGURES[0])
    paths += figures.plot_jsd_heatmap(result, folder / ANALYSIS_FIGURES[1])
    length = int(result.lengths[0])
    critical = result.critical[0, :length]
    mutation = result.mutation[0, :length]
    detected = critical[critical > 0]
    return {
        "folder": folder.as_posix(),
        "figures": [p.name for p in paths],
        "critical_per_step": critical.tolist(),
        "critical_median": int(np.median(detected)) if detected.size else 0,
        "mutation_counts": {str(j + 1): int(n) for j, n in enumerate(mutation.sum(0)) if n},
    }


def _jsonable(value):
    """numpy scalars / arrays inside dicts and lists -> plain Python."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


# ------------------------------------------------------------------------------------ driver


def build_parser(prog: str, variants: tuple[str, ...]) -> argparse.ArgumentParser:
    names = ", ".join(COLUMN_TITLES[v] for v in variants)
    p = argparse.ArgumentParser(
        prog=prog, description=f"The paper's skip experiment (Sec. 4.2, Fig. 5): original vs {names}.")
    p.add_argument("--model", default=DEFAULT_MODEL, help="Local Hugging Face LLaVA folder (default: the project's scene-llava).")
    p.add_argument("--images", nargs="+", default=None,
                   help="Image files (default: 4 generated scenes, 2 prior-consistent and 2 prior-breaking).")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="The instruction.")
    p.add_argument("--out", default=DEFAULT_OUT, help="Output folder (results.json, tables, analysis/).")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="Layer choices of a known model; --critical / --mutation / --keep-last override them.")
    p.add_argument("--critical", type=int, default=None, help="Critical layer c (1-based); calibrated per prompt if omitted.")
    p.add_argument("--mutation", type=parse_layers, default=None,
                   help="Mutation layers, e.g. 27,28,29,30 or 27-30; calibrated per prompt if omitted.")
    p.add_argument("--keep-last", type=int, default=None, help="Final layers skip.3 keeps (default 5).")
    p.add_argument("--mode", choices=("static", "online"), default="static",
                   help="static: one skip set per prompt (given or calibrated); online: decided at every step.")
    p.add_argument("--max-new-tokens", type=int, default=96, help="Generation length limit.")
    p.add_argument("--show-deleted", action="store_true", help="Also show the original's dropped words, struck through.")
    p.add_argument("--no-analysis", action="store_true", help="Skip the per-image trace and figures.")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    p.add_argument("--no-progress", action="store_true", help="No progress bar.")
    return p


def settings_of(args) -> dict:
    """The settings that determine the results (a rerun with other settings starts afresh)."""
    preset = PRESETS.get(args.preset) if args.preset else None
    critical = args.critical if args.critical is not None else (preset.critical if preset else None)
    mutation = args.mutation if args.mutation is not None else (preset.mutation if preset else None)
    keep_last = args.keep_last if args.keep_last is not None else (preset.keep_last if preset else 5)
    if keep_last < 1:
        raise RecipeError(f"--keep-last (={keep_last}) has to be a positive int")
    if args.max_new_tokens < 1:
        raise RecipeError(f"--max-new-tokens (={args.max_new_tokens}) has to be a positive int")
    return {
        "model": args.model, "prompt": args.prompt, "mode": args.mode, "preset": args.preset,
        "critical": critical, "mutation": list(mutation) if mutation else None, "keep_last": keep_last,
        "max_new_tokens": args.max_new_tokens, "model_files": model_fingerprint(args.model),
    }


def model_fingerprint(model_path: str) -> str | None:
    """Size and modification time of the folder's weights and config: a retrained model invalidates old results."""
    folder = Path(model_path)
    files = sorted(p for p in folder.glob("*") if p.suffix in (".json", ".safetensors", ".bin")) if folder.is_dir() else []
    if not files:
        return None
    stats = [p.stat() for p in files]
    return f"{sum(st.st_size for st in stats)} bytes, newest {time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(max(st.st_mtime for st in stats)))}"


def wrap_options(settings: dict) -> dict:
    options = {"mode": settings["mode"], "keep_last": settings["keep_last"]}
    if settings["critical"] is not None:
        options["critical_layer"] = settings["critical"]
    if settings["mutation"]:
        options["mutation_layers"] = settings["mutation"]
    return options


def _check_layers(model, settings: dict) -> None:
    from lvlm_skip import ModelAnatomy

    num_layers = ModelAnatomy.from_model(model).num_layers
    preset = PRESETS.get(settings["preset"]) if settings["preset"] else None
    if preset and preset.num_layers != num_layers:
        raise RecipeError(f"preset {settings['preset']} is for {preset.num_layers} decoder layers, the model has {num_layers}")
    for layer in [settings["critical"]] + (settings["mutation"] or []):
        if layer is not None and not 1 <= layer <= num_layers:
            raise RecipeError(f"layer {layer} is out of range: the model has layers 1..{num_layers}")
    if settings["keep_last"] >= num_layers:
        raise RecipeError(f"--keep-last {settings['keep_last']} has to be smaller than the {num_layers} layers")


def load_results(path: Path, settings: dict) -> dict[str, ImageResult]:
    """Finished images of an earlier run with the same settings (else nothing)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        logger.warning("%s is unreadable: starting afresh", path)
        return {}
    if data.get("settings") != settings:
        logger.warning("%s was made with other settings: starting afresh", path)
        return {}
    return {stem: ImageResult.from_dict(entry) for stem, entry in data.get("images", {}).items()}


def write_results(path: Path, settings: dict, results: dict[str, ImageResult]) -> None:
    """Rewrite ``results.json`` atomically (a killed run leaves the previous complete file)."""
    payload = {"settings": settings, "presets": {k: asdict(v) for k, v in PRESETS.items()},
               "images": {stem: asdict(r) for stem, r in results.items()}}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=1))
    tmp.replace(path)


def run(args, variants: tuple[str, ...]) -> list[ImageResult]:
    """Generate what is missing, write results.json after each image, then the tables."""
    from tqdm.auto import tqdm

    out = Path(args.out)
    settings = settings_of(args)
    # 1. inputs: check every image before any model work
    if args.images:
        paths = [Path(p) for p in args.images]
        for path in paths:
            check_image(path)
        images = list(zip(paths, [None] * len(paths)))
    else:
        out.mkdir(parents=True, exist_ok=True)
        images = default_images(out)
    out.mkdir(parents=True, exist_ok=True)
    stems = _unique_stems([p for p, _ in images])
    results_path = out / "results.json"
    done = load_results(results_path, settings)
    wanted = _columns(variants)

    # 2. generation, loading the model only if something is missing
    todo = sum(len([v for v in wanted if v not in done.get(s, ImageResult(s, "")).variants]) for s in stems)
    model = processor = None
    bar = tqdm(total=todo, desc="images x variants", disable=args.no_progress or todo == 0)
    ordered: list[ImageResult] = []
    for stem, (path, truth) in zip(stems, images):
        result = done.get(stem) or ImageResult(stem=stem, path=path.as_posix(), truth=truth)
        missing = [v for v in wanted if v not in result.variants]
        need_analysis = not args.no_analysis and not result.analysis
        if missing or need_analysis:
            if model is None:
                model, processor = load(args.model, args.device)
                _check_layers(model, settings)
            inputs = encode_image(processor, model, path.as_posix(), settings["prompt"])
            for variant in missing:
                bar.set_postfix_str(f"{stem} {COLUMN_TITLES[variant]}")
                result.variants[variant] = generate_text(model, processor, inputs, variant, wrap_options(settings),
                                                         settings["max_new_tokens"])
                bar.update()
            if need_analysis:
                result.analysis = analyse(model, processor, inputs, out / "analysis" / stem, settings["max_new_tokens"])
            done[stem] = result
            write_results(results_path, settings, done)
        ordered.append(result)
    bar.close()

    # 3. the table
    name = "fig5_skip_table" if tuple(variants) == SKIP_VARIANTS else "_".join(variants) + "_table"
    (out / f"{name}.md").write_text(markdown_table(ordered, variants, settings, out, args.show_deleted))
    (out / f"{name}.html").write_text(html_table(ordered, variants, settings, args.show_deleted))
    logger.info("wrote %s, %s and %s", results_path, out / f"{name}.md", out / f"{name}.html")
    return ordered


def main(argv: list[str] | None = None, variants: tuple[str, ...] = SKIP_VARIANTS, prog: str | None = None) -> int:
    """Run the experiment for ``variants`` (all three by default); exit status 2 on bad input."""
    prog = prog or "python -m recipes.skip_experiments"
    args = build_parser(prog, variants).parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run(args, tuple(variants))
    except RecipeError as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        raise SystemExit(2) from None
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
