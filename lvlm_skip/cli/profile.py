"""``lvlm-skip profile``: arrives with its issue."""

from __future__ import annotations

from .options import CliError

HELP = "Not implemented yet."


def add_arguments(p) -> None:
    pass


def run(args) -> int:
    raise CliError("lvlm-skip profile is not implemented yet")
