"""Sets of images named on the command line: a folder, a comma list, or a text file of paths.

Fig. 7 asks one question of many images (the paper: 12 per question). :func:`resolve_images` turns
the user's ``--images`` argument into checked paths before any model is loaded; :func:`image_groups`
splits a folder of folders (the authors' ``image/animal``, ``image/flower``, ...) into named groups.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def natural_key(path: Path) -> list:
    """Sort key that orders ``flower2`` before ``flower10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _images_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)


def resolve_images(spec: str, option: str = "--images", minimum: int = 1) -> list[Path]:
    """The image paths that ``spec`` names, each an existing regular file.

    Args:
        spec: A folder (its image files, by suffix, in natural order; not recursive), a comma-separated
            list of image files, one image file, or a text file with one path per line (blank lines
            and ``#`` comments skipped; relative paths are relative to the text file's folder).
        option: The option name used in messages.
        minimum: Fewest images accepted.

    Returns:
        The paths, in order.

    Raises:
        InputError: a missing path, a folder without images, a listed path that is not a regular
            file, or fewer than ``minimum`` images.
    """
    spec = str(spec).strip()
    if not spec:
        raise InputError(f"{option} is empty: give a folder, a comma-separated list or a text file of image paths")
    # 1. the kinds of spec
    if "," in spec:
        paths = [Path(part.strip()) for part in spec.split(",") if part.strip()]
    else:
        path = Path(spec)
        if not path.exists():
            raise InputError(f"{option} {spec!r} does not exist")
        if path.is_dir():
            paths = _images_in(path)
            if not paths:
                raise InputError(f"{option} {spec!r} is a folder without image files ({', '.join(IMAGE_SUFFIXES)})")
        elif not path.is_file():
            raise InputError(f"{option} {spec!r} is not a regular file or a folder")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            paths = [path]
        else:
            paths = _read_list(path, option)
    # 2. every path a regular file, and enough of them
    for path in paths:
        if not path.exists():
            raise InputError(f"{option}: image {str(path)!r} does not exist")
        if not path.is_file():
            raise InputError(f"{option}: image {str(path)!r} is not a regular file")
    if len(paths) < minimum:
        raise InputError(f"{option} {spec!r} names {len(paths)} image(s); at least {minimum} are needed")
    return paths


def _read_list(path: Path, option: str) -> list[Path]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{option} {str(path)!r} is neither an image nor a readable text list of paths: {error}") from None
    paths = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            listed = Path(line)
            paths.append(listed if listed.is_absolute() else path.parent / listed)
    if not paths:
        raise InputError(f"{option} {str(path)!r} lists no image paths")
    return paths


def image_groups(spec: str, option: str = "--images") -> dict[str, list[Path]]:
    """Named groups of images: each sub-folder of a folder is a group (the authors' ``image/`` layout).

    Args:
        spec: A folder whose image files form one group named after it and whose sub-folders with
            images form one group each; or anything :func:`resolve_images` accepts (one group).
        option: The option name used in messages.

    Returns:
        Group name -> image paths, groups in natural order.

    Raises:
        InputError: as :func:`resolve_images`, or a folder with no images at any of the two levels.
    """
    path = Path(str(spec).strip())
    if "," in str(spec) or not path.is_dir():
        return {path.stem if path.is_file() else "images": resolve_images(spec, option)}
    groups = {}
    direct = _images_in(path)
    if direct:
        groups[path.name] = direct
    for sub in sorted((p for p in path.iterdir() if p.is_dir()), key=natural_key):
        images = _images_in(sub)
        if images:
            groups[sub.name] = images
    if not groups:
        raise InputError(f"{option} {str(spec)!r} has no image files, neither inside it nor in its sub-folders")
    return groups
