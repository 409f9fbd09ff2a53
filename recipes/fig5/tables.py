"""Fig. 5 as a table: image | original | skip.1 | skip.2 | skip.3, in Markdown and in HTML.

Each variant's cell is its description with the words that differ from the original's marked
(:mod:`recipes.fig5.word_diff`) and one line of what it skipped (:func:`skip_summary`). The
caption names the model, the prompt, each variant's definition and the layers with their source
(:meth:`~recipes.fig5.layers.Fig5Layers.describe`). The Markdown table links its thumbnails
(``images/`` of the output folder, or the image files); the HTML page embeds them.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from lvlm_skip.variants import VARIANTS

from .layers import SKIP_VARIANTS, TITLES, format_layers
from .results import ImageResult, VariantResult
from .word_diff import html_diff, markdown_diff, markdown_escape

THUMBNAIL_PX = 160
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


def table_name(variants: tuple[str, ...]) -> str:
    """``fig5_skip_table`` for all three variants, else e.g. ``fig5_skip2_table`` (the full table is not overwritten)."""
    return "fig5_skip_table" if tuple(variants) == SKIP_VARIANTS else "fig5_" + "_".join(variants) + "_table"


def skip_summary(result: VariantResult) -> str:
    """One line: what a variant skipped at step 0, per step on average, and what was measured."""
    text = f"skipped {format_layers(result.skipped_step0)} at step 0, {result.mean_skipped:.1f} layers/step"
    if set(result.skipped_any) != set(result.skipped_step0):
        text += f"; at some step: {format_layers(result.skipped_any)}"
    if result.calibration:
        measured = result.calibration
        text += f"; measured c={measured.get('critical')}, M={format_layers(measured.get('mutation') or [])}"
    return text


def caption(variants: tuple[str, ...], model: str, prompt: str, layers: str) -> str:
    """The sentences above the table: model, prompt, the variants' definitions, the layers."""
    definitions = "; ".join(f"{TITLES[v]} skips {VARIANTS[v].skips}" for v in variants)
    return f"Model {model}, prompt \"{prompt}\"; {definitions}. Layers: {layers}."


def markdown_table(results: list[ImageResult], variants: tuple[str, ...], caption_text: str, out: Path,
                   show_deleted: bool = False) -> str:
    """The table as Markdown, thumbnails linked relative to ``out``."""
    from lvlm_skip.evaluation.report import markdown_table as table

    rows = []
    for result in results:
        image = f'<img src="{_image_link(result, out)}" width="{THUMBNAIL_PX // 2}"><br>{markdown_escape(result.stem)}'
        if result.truth:
            image += f"<br>truth: {markdown_escape(result.truth)}"
        original = result.variants["none"].text
        cells = [image, markdown_escape(original) or "(empty)"]
        for variant in variants:
            described = result.variants[variant]
            marked = markdown_diff(original, described.text, show_deleted) or "(empty)"
            cells.append(f"{marked}<br>*{skip_summary(described)}*")
        rows.append(cells)
    marks = "**inserted or changed**" + (", ~~dropped~~" if show_deleted else "")
    heading = (f"# Skip connections (Fig. 5): {', '.join(TITLES[v] for v in variants)}\n\n"
               f"{markdown_escape(caption_text)} Words that differ from the original: {marks}.")
    headers = ["image", TITLES["none"], *(TITLES[v] for v in variants)]
    return heading + "\n\n" + table(rows, headers=headers, pad=False) + "\n"


def html_table(results: list[ImageResult], variants: tuple[str, ...], caption_text: str, show_deleted: bool = False) -> str:
    """The table as a self-contained HTML page (thumbnails embedded as base64 data URIs)."""
    head = "".join(f"<th>{html.escape(TITLES[v])}</th>" for v in ("none", *variants))
    rows = []
    for result in results:
        stem = html.escape(result.stem)
        image = f'<img src="{_thumbnail_data_uri(result.path)}" alt="{stem}"><br>{stem}'
        if result.truth:
            image += f'<div class="truth">truth: {html.escape(result.truth)}</div>'
        original = result.variants["none"].text
        cells = [image, html.escape(original)]
        for variant in variants:
            described = result.variants[variant]
            cells.append(f'{html_diff(original, described.text, show_deleted)}'
                         f'<div class="skip">{html.escape(skip_summary(described))}</div>')
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    title = f"Skip connections (Fig. 5): {', '.join(TITLES[v] for v in variants)}"
    marks = "<ins>inserted or changed</ins>" + (", <del>dropped</del>" if show_deleted else "")
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
        f"<p>{html.escape(caption_text)} Words that differ from the original: {marks}.</p>\n"
        f"<table><tr><th>image</th>{head}</tr>\n" + "\n".join(rows) + "\n</table></body></html>\n"
    )


def _image_link(result: ImageResult, out: Path) -> str:
    path = Path(result.path).resolve()
    try:
        return path.relative_to(out.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _thumbnail_data_uri(path: str) -> str:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
