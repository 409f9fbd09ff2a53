"""The one exception type for bad input that the user can fix.

:class:`InputError` covers a wrong path, an unreadable or malformed file (model folder, image,
annotation file), an unsupported model, an option out of range. Its message is one line that
says what is wrong and, where it helps, what would be right. The ``lvlm-skip`` console script
prints it as ``lvlm-skip: error: <message>`` and exits with status 2; any other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input (path, file, option, model) that the user can fix; the message is one line."""


def one_line(error: BaseException, limit: int = 600) -> str:
    """``error``'s message on one line (whitespace collapsed), at most ``limit`` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
