"""The ``lvlm-skip`` console script: one command, one subcommand per task.

    lvlm-skip trace    read one answer out layer by layer; the paper's figures
    lvlm-skip profile  a model's critical / mutation layers over many prompts
    lvlm-skip amber    AMBER hallucination benchmark per variant
    lvlm-skip caption  caption quality, CHAIR and closeness per variant
    lvlm-skip pope     POPE yes/no object probing per variant
    lvlm-skip speed    decoding speed of every variant against the stock model
    lvlm-skip scenes   generate the scene benchmark (AMBER / COCO / POPE format)

Every subcommand lives in its own module of this package, which defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Those modules import only the standard library
and :mod:`lvlm_skip.cli.options` at import time, so ``lvlm-skip --help`` and ``lvlm-skip X --help``
are instant; the work (torch, transformers, the benchmark code) is imported inside ``run``.

One error style: bad input (a wrong path, a corrupt file, an unsupported model, an option out of
range) ends with one line ``lvlm-skip: error: <message>`` on stderr and exit status 2, before any
model is loaded where it can be checked before. Ctrl-C ends with one line (for evaluations: how
much is saved and how to resume) and exit status 130. Option defaults are shown in ``--help``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import import_module

from ..errors import InputError, one_line
from .options import PROG, CliError, OneLineArgumentParser, add_common_arguments

#: Subcommand name -> module of this package that implements it, in the order ``--help`` lists them.
SUBCOMMANDS: dict[str, str] = {
    "trace": "trace",
    "profile": "profile",
    "amber": "amber",
    "caption": "caption",
    "pope": "pope",
    "speed": "speed",
    "scenes": "scenes",
}

logger = logging.getLogger("lvlm_skip.cli")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one subparser per entry of :data:`SUBCOMMANDS`."""
    parser = OneLineArgumentParser(
        prog=PROG,
        description="Layer-wise knowledge evolution and layer skipping in vision-language models "
        "(Wang et al., CVPR 2025).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=OneLineArgumentParser)
    for name, module_name in SUBCOMMANDS.items():
        module = import_module(f".{module_name}", __name__)
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=(module.__doc__ or module.HELP).strip().split("\n\n")[0],
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(sub)
        add_common_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lvlm-skip``; returns 0, or exits with status 2 on bad input (one line)."""
    try:
        args = build_parser().parse_args(argv)
    except CliError as error:
        _fail(str(error))
    _configure_logging(args.log_level)
    try:
        return int(args.run(args) or 0)
    except (CliError, InputError) as error:
        _fail(one_line(error))
    except KeyboardInterrupt as interrupt:
        sys.stderr.write(f"{PROG}: {one_line(interrupt) if str(interrupt) else 'interrupted'}\n")
        raise SystemExit(130) from None


def _fail(message: str):
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise SystemExit(2)


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(message)s", stream=sys.stderr)
    logging.getLogger("lvlm_skip").setLevel(level)


