"""Reading an image file: the one image loader (PIL only, so that it is cheap to import)."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError, one_line


def load_image(path: str | Path):
    """An RGB PIL image read from ``path``.

    Raises:
        InputError: the file does not exist, is not a regular file, or is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    file = Path(path)
    if not file.exists():
        raise InputError(f"image {str(path)!r} does not exist")
    if not file.is_file():
        raise InputError(f"image {str(path)!r} is not a regular file")
    try:
        with Image.open(file) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputError(f"cannot read image {str(path)!r}: {one_line(error)}") from None
