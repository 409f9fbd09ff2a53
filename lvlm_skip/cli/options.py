"""Argument names shared by every ``lvlm-skip`` subcommand, defined once.

A subcommand calls the ``add_*_arguments`` functions it needs, so the same option has the same
name, meaning and default everywhere:

* model: ``--model``, ``--device``, ``--dtype``, ``--device-map``;
* variants: ``--variants``, ``--variant-options``, ``--mode``, ``--profile``;
* output: ``--out``, ``--overwrite``;
* generation: ``--max-new-tokens``, ``--limit``, ``--batch-size``;
* data: ``--image-dir``;
* evaluation (amber, caption, pope): all of the above and ``--score-only``;
* common to all (added by the dispatcher): ``--log-level``, ``--no-progress``.

This module imports no torch (only the torch-free :mod:`lvlm_skip.config` and the registry):
``--help`` must stay instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ..config import MODES
from ..inputs import BUILTIN_MODELS

PROG = "lvlm-skip"
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


class CliError(Exception):
    """A user error found by the command line itself; printed as one line, exit status 2."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage dump) and exit status 2."""

    def error(self, message: str):
        raise CliError(message)


def _int_at_least(minimum: int, expected: str):
    """An argparse type: an int >= ``minimum``, refused as "expected {expected}, got ..."."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


#: argparse type: an int >= 1.
positive_int = _int_at_least(1, "a positive int")


def batch_sizes(text: str) -> list[int]:
    """An argparse type: comma-separated positive ints (batch sizes), in the given order, without repeats."""
    sizes = list(dict.fromkeys(positive_int(part) for part in text.split(",") if part.strip()))
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}")
    return sizes


def batch_size(text: str) -> int | None:
    """``--batch-size``: a positive int, or ``auto`` (``None``: 1 on CPU; on CUDA, what fits in memory)."""
    if text.strip().lower() == "auto":
        return None
    return positive_int(text)
#: argparse type: an int >= 0.
non_negative_int = _int_at_least(0, "an int >= 0")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--no-progress``, on every subcommand (the dispatcher adds them)."""
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="Logging level.")
    parser.add_argument(
        "--no-progress", action="store_true",
        help="No progress bars. Without it, bars are shown only when stderr is a terminal.",
    )


def progress_enabled(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal, and never with ``--no-progress``."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


class StageLines:
    """Off a terminal (no progress bars): one log line per finished stage, ``STAGE done: N UNIT in S s``.

    The clock starts at construction; each :meth:`done` reports the time since the previous one
    (or since the start), so the lines add up to the command's run time. On a terminal the progress
    bars show the same, and :meth:`done` logs nothing.
    """

    def __init__(self, args: argparse.Namespace, logger_name: str = "lvlm_skip.cli"):
        self._clock = time.perf_counter
        self.enabled = not progress_enabled(args)
        self.logger = logging.getLogger(logger_name)
        self.mark = self._clock()

    def done(self, stage: str, items: int, unit: str) -> None:
        """Log that ``stage`` finished ``items`` ``unit`` (e.g. ``"prompt(s)"``) since the last mark."""
        now = self._clock()
        if self.enabled:
            self.logger.info("%s done: %d %s in %.1f s", stage, items, unit, now - self.mark)
        self.mark = now


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = True, default: str | None = None) -> None:
    """``--model``, ``--device``, ``--dtype``, ``--device-map``."""
    parser.add_argument(
        "--model", required=required and default is None, default=default,
        help=f"A local Hugging Face model folder (never downloaded), or a built-in random model: {', '.join(BUILTIN_MODELS)}.",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N.")
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="Parameter dtype; auto: float16 on CUDA, float32 on CPU.")
    parser.add_argument(
        "--device-map", default=None,
        help="Shard the model with accelerate (e.g. auto, balanced); overrides --device.",
    )


def add_variant_arguments(parser: argparse.ArgumentParser, *, default: str = "none") -> None:
    """``--variants``, ``--variant-options``, ``--mode``, ``--profile``."""
    parser.add_argument(
        "--variants", default=default,
        help="Comma-separated variant specs name[:mode], e.g. none,skip1,skip2:online,exit:online; lossless "
             "speculative decoding: speculative:DRAFT (skip1, skip3, exit, layers; layers from --profile or the options).",
    )
    parser.add_argument(
        "--variant-options", default=None,
        help="JSON object (or a JSON file) of lvlm_skip.wrap options by variant name or spec, "
        "e.g. '{\"skip3\": {\"critical_layer\": 18}}'.",
    )
    parser.add_argument("--mode", default="static", choices=MODES, help="Mode of the variant specs that name none.")
    parser.add_argument(
        "--profile", default=None,
        help="A layer profile (profile.json from `lvlm-skip profile`) giving the variants' critical and mutation layers.",
    )


def add_output_arguments(parser: argparse.ArgumentParser, *, default: str, resumable: bool = True) -> None:
    """``--out``, and ``--overwrite`` for commands whose output folder holds resumable results."""
    parser.add_argument("--out", default=default, help="Output folder.")
    if not resumable:
        return
    parser.add_argument(
        "--overwrite", action="store_true",
        help="Discard earlier results in --out that were made with other settings, instead of refusing to mix them.",
    )


def add_generation_arguments(parser: argparse.ArgumentParser, *, max_new_tokens: int,
                             limit_help: str = "Only the first N items.") -> None:
    """``--max-new-tokens`` and ``--limit``."""
    parser.add_argument("--max-new-tokens", type=positive_int, default=max_new_tokens, help="Generation length limit.")
    parser.add_argument("--limit", type=positive_int, default=None, help=limit_help)


#: What ``--batch-size auto`` means in the evaluation commands.
AUTO_BATCH_HELP = ("1 on CPU; on CUDA the largest power of two up to 32 whose longest batch fits in memory. Answers "
                   "do not depend on it, so a run resumes at any batch size.")


def add_batch_size_argument(parser: argparse.ArgumentParser, *, auto: str = AUTO_BATCH_HELP) -> None:
    """``--batch-size``: items per ``generate`` call (``auto`` described by ``auto``)."""
    parser.add_argument(
        "--batch-size", type=batch_size, default=None, metavar="N|auto",
        help=f"Items per generate call (left-padded, sorted by prompt length). auto (default): {auto}",
    )


def add_image_dir_argument(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--image-dir``: the folder that the image names of a data file are relative to."""
    parser.add_argument(
        "--image-dir", required=required, default=None,
        help="Folder of the images named in the data file; names that lead outside it are refused. "
        "Needed unless --score-only.",
    )


def add_evaluation_arguments(parser: argparse.ArgumentParser, *, default_out: str, max_new_tokens: int,
                             default_variants: str = "none", limit_help: str = "Only the first N items.") -> None:
    """The options of every evaluation subcommand (amber, caption, pope), besides its data files."""
    add_model_arguments(parser, required=False)
    add_image_dir_argument(parser)
    add_variant_arguments(parser, default=default_variants)
    add_output_arguments(parser, default=default_out)
    add_generation_arguments(parser, max_new_tokens=max_new_tokens, limit_help=limit_help)
    add_batch_size_argument(parser)
    parser.add_argument(
        "--score-only", action="store_true",
        help="Score the answers already in --out (no model, no --image-dir needed); generate nothing.",
    )
    add_verify_weights_argument(parser)


def add_verify_weights_argument(parser: argparse.ArgumentParser) -> None:
    """``--verify-weights``: re-hash the model's files instead of trusting the digest cache."""
    parser.add_argument(
        "--verify-weights", action="store_true",
        help="Read and hash the model's files again instead of trusting the digest cache (which trusts a file "
        "whose path, size and mtime are unchanged): for weights edited in place with their mtime restored.",
    )
