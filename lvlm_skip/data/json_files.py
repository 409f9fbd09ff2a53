"""The one reader of JSON data files (AMBER, COCO, POPE), with one-line errors.

Data files are the user's input: a missing, unreadable or malformed one is a
:class:`DataFileError` (an :class:`~lvlm_skip.errors.InputError`), whose message names the file
and says what is wrong, so the command line reports it in one line with exit status 2.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError, one_line


#: The message for JSON whose nesting exceeds what Python's parser accepts (a ``RecursionError``).
TOO_DEEP = "JSON nested too deeply (deeper than Python's recursion limit; no data file needs that)"


def parse_json(text: str, source: str, error: type[InputError] = InputError) -> Any:
    """``json.loads(text)``, with a one-line ``error`` naming ``source`` for corrupt or too deeply nested JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{source}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise error(f"{source}: {TOO_DEEP}") from None


class DataFileError(InputError):
    """A data file (annotations, queries, captions, questions) is missing, unreadable or malformed."""


def read_json(path: str | os.PathLike, error: type[DataFileError] = DataFileError) -> Any:
    """The parsed content of a JSON file.

    Raises:
        DataFileError (or the subclass ``error``): the file is missing, unreadable, not UTF-8 or not JSON.
    """
    file = Path(path)
    if not file.is_file():
        raise error(f"{file}: file not found")
    try:
        with file.open("r", encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise error(f"{file}: corrupt JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise error(f"{file}: {TOO_DEEP}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{file}: unreadable ({one_line(exc)})") from None


def read_json_lines(path: str | os.PathLike, error: type[DataFileError] = DataFileError) -> list[Any]:
    """The parsed lines of a JSON-lines file (one JSON value per line; blank lines are skipped).

    Strict, as befits input data: a malformed line is an error naming its line number. (The
    answers a run stores are read by the tolerant reader of :mod:`lvlm_skip.evaluation.records`.)

    Raises:
        DataFileError (or the subclass ``error``): the file is missing or unreadable, or a line is not JSON.
    """
    return [value for _, value in read_numbered_json_lines(path, error)]


def read_numbered_json_lines(path: str | os.PathLike, error: type[DataFileError] = DataFileError) -> list[tuple[int, Any]]:
    """``(line number, parsed value)`` of every non-blank line of a JSON-lines file (numbers from 1).

    The same reader as :func:`read_json_lines`, for callers whose own checks of each value must
    name its line.

    Raises:
        DataFileError (or the subclass ``error``): the file is missing or unreadable, or a line is not JSON.
    """
    file = Path(path)
    if not file.is_file():
        raise error(f"{file}: file not found")
    values = []
    try:
        with file.open("r", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        values.append((number, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise error(f"{file}: line {number} is not JSON ({exc.msg})") from None
                    except RecursionError:
                        raise error(f"{file}: line {number}: {TOO_DEEP}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{file}: unreadable ({one_line(exc)})") from None
    return values
