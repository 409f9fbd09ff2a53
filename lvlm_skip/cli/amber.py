"""``lvlm-skip amber``: interim forwarder to ``python -m eval.amber`` while the evaluation moves into the package."""

from __future__ import annotations

import argparse

HELP = "Interim: runs python -m eval.amber with the remaining arguments."


def add_arguments(p) -> None:
    p.add_argument("arguments", nargs=argparse.REMAINDER, help="Arguments of python -m eval.amber.")


def run(args) -> int:
    from importlib import import_module

    return import_module("eval.amber").main(args.arguments) or 0
