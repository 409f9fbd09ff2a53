"""``lvlm-skip speed``: interim forwarder to ``python -m eval.speed`` while the evaluation moves into the package."""

from __future__ import annotations

import argparse

HELP = "Interim: runs python -m eval.speed with the remaining arguments."


def add_arguments(p) -> None:
    p.add_argument("arguments", nargs=argparse.REMAINDER, help="Arguments of python -m eval.speed.")


def run(args) -> int:
    from importlib import import_module

    return import_module("eval.speed").main(args.arguments) or 0
