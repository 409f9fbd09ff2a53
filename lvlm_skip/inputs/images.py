"""Reading an image file: the one image loader (PIL only, so that it is cheap to import).

**Pixel limit.** An image larger than :data:`MAX_IMAGE_PIXELS` (100 million pixels, e.g.
10000 x 10000) is refused from its header, before it is decoded: a small file can claim a size
whose decoding needs gigabytes (a "decompression bomb"). The refusal is an :class:`InputError`
like any unreadable image, so an evaluation records it as an error row and goes on. Raise the limit
with the environment variable ``LVLM_SKIP_MAX_IMAGE_PIXELS`` (every command, every rank of a
sharded run) or ``load_image(path, max_pixels=...)``. PIL's own limit (``Image.MAX_IMAGE_PIXELS``)
is set to match during the read, so the frames PIL checks while decoding obey the same limit.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from ..errors import InputError, one_line

#: The largest image accepted, in pixels (width x height), unless ``LVLM_SKIP_MAX_IMAGE_PIXELS`` says otherwise.
MAX_IMAGE_PIXELS = 100_000_000
#: The environment variable that sets the pixel limit.
PIXELS_VARIABLE = "LVLM_SKIP_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel limit: ``$LVLM_SKIP_MAX_IMAGE_PIXELS`` when set, else :data:`MAX_IMAGE_PIXELS`.

    Raises:
        InputError: the variable is set but is not a positive integer.
    """
    text = os.environ.get(PIXELS_VARIABLE, "").strip()
    if not text:
        return MAX_IMAGE_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{PIXELS_VARIABLE}={text!r} is not a positive number of pixels (default {MAX_IMAGE_PIXELS})")
    return value


def load_image(path: str | Path, max_pixels: int | None = None):
    """An RGB PIL image read from ``path``.

    Args:
        path: The image file.
        max_pixels: The largest ``width * height`` accepted (default: :func:`max_image_pixels`).

    Raises:
        InputError: the file does not exist, is not a regular file, is not a readable image, or
            has more than ``max_pixels`` pixels (checked from its header, before decoding).
    """
    from PIL import Image, UnidentifiedImageError  # images.py is on the --help import path: PIL only to read one

    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    if limit < 1:
        raise InputError(f"max_pixels must be a positive number of pixels, got {max_pixels}")
    file = Path(path)
    if not file.exists():
        raise InputError(f"image {str(path)!r} does not exist")
    if not file.is_file():
        raise InputError(f"image {str(path)!r} is not a regular file")
    previous = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None  # 1. the header, read by open(), is checked against our limit here
            with Image.open(file) as image:
                width, height = image.size
                if width * height > limit:
                    raise InputError(
                        f"image {str(path)!r} is {width} x {height} = {width * height:,} pixels, over the limit of "
                        f"{limit:,}: set {PIXELS_VARIABLE} to raise it"
                    )
                # 2. PIL's own check (it raises above twice its limit) at ours, for every frame it decodes
                Image.MAX_IMAGE_PIXELS = (limit + 1) // 2
                return image.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        hint = f" (set {PIXELS_VARIABLE} to raise the limit)" if isinstance(error, Image.DecompressionBombError) else ""
        raise InputError(f"cannot read image {str(path)!r}: {one_line(error)}{hint}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous
