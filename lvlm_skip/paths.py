"""Checks on user-given paths that run before any model is loaded."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError, one_line


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create ``path`` if needed and make sure files can be written into it.

    Runs before anything expensive, so that an unusable output folder (an existing file, a
    read-only or virtual file system such as ``/proc``) is a one-line error, not a traceback after
    the model has loaded.

    Args:
        path: The output folder.
        option: The option name used in the message.

    Returns:
        The folder as a :class:`~pathlib.Path`.

    Raises:
        InputError: the path is an existing non-folder, cannot be created, or is not writable.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option} {str(path)!r} is an existing file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # the only reliable writability test is writing (os.access lies on some file systems)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        raise InputError(f"{option} {str(path)!r} is not a writable folder: {one_line(error)}") from None
    return folder
