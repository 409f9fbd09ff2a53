"""Checks on user-given paths: output folders, and file names read from data files.

* :func:`check_output_dir`: call it first in every command that writes a folder (``--out``), before
  anything is loaded, so that an unusable folder is a one-line error (exit status 2), not a
  traceback after the model has loaded.
* :func:`resolve_under`: a file name read from a data file (an image of an AMBER query, a COCO
  caption file, a POPE question), resolved inside its folder (``--image-dir``) and refused when it
  escapes it or is not a regular file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ..errors import InputError, one_line


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


def resolve_under(root: str | os.PathLike, relative: str, *, what: str = "image", root_option: str = "--image-dir") -> Path:
    """The regular file ``relative`` names inside the folder ``root``, checked without opening it.

    Data files (AMBER queries, COCO captions, POPE questions) name their images relative to an
    image folder. A name that leaves the folder is refused, whether it does so lexically
    (``../../x.png``), by being absolute, or through a symlink whose target lies outside; the
    message is the same whether or not the outside file exists, so it reveals nothing about
    files outside ``root``. Inside the folder, a missing name and a name that is not a regular
    file (a FIFO, which would block a reader, a device, a folder) are refused with
    :func:`os.stat`, which never opens the file.

    Args:
        root: The folder the names are relative to (``--image-dir``).
        relative: The name as written in the data file.
        what: What the file is, for the message.
        root_option: The option that gave ``root``, for the message.

    Returns:
        The file's real path (symlinks inside ``root`` resolved).

    Raises:
        InputError: one line naming ``relative``: outside ``root``, missing, or not a regular file.
    """
    name = str(relative)
    outside = InputError(f"{what} {name!r} is outside {root_option} (only names inside the folder are read)")
    if not name or os.path.isabs(name) or "\x00" in name:
        raise outside
    base = os.path.realpath(root)
    # 1. containment, decided on the resolved path before anything is known about the file
    target = os.path.realpath(os.path.join(base, name))
    if os.path.commonpath([base, target]) != base:
        raise outside
    # 2. the file itself, with stat (follows the symlinks already resolved above, opens nothing)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        raise InputError(f"{what} {name!r} does not exist in {root_option} {str(root)!r}") from None
    except OSError as error:
        raise InputError(f"{what} {name!r} cannot be read: {one_line(error)}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} {name!r} is not a regular file")
    return Path(target)
