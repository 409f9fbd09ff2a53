"""How a recipe runs from the command line: the error style and the options every recipe shares.

A recipe's ``main(argv=None)`` builds its parser with :func:`recipe_parser` and hands it to
:func:`run_recipe`, so that every recipe behaves like the ``lvlm-skip`` command:

* bad input (an option argparse rejects, an :class:`~lvlm_skip.errors.InputError` raised by the
  recipe or the library: a wrong path, an unusable ``--out``, a layer out of range) ends with one
  line ``python -m recipes.X: error: <message>`` on stderr and exit status 2; recipes check what
  they can before any model is loaded;
* Ctrl-C ends with one line and exit status 130;
* every recipe takes ``--no-progress``; without it, progress bars are drawn only when stderr is a
  terminal (:func:`lvlm_skip.cli.options.progress_enabled`), transformers' own ("Loading
  weights", "Writing model shards") included, so logs of unattended runs hold no bars.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from lvlm_skip.cli.options import CliError, OneLineArgumentParser, progress_enabled
from lvlm_skip.errors import InputError, one_line

__all__ = ["progress_enabled", "recipe_parser", "run_recipe"]


def recipe_parser(module: str, description: str) -> argparse.ArgumentParser:
    """A one-line-error parser for ``python -m <module>``, with ``--no-progress`` and defaults in ``--help``."""
    parser = OneLineArgumentParser(prog=f"python -m {module}", description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--no-progress", action="store_true",
                        help="No progress bars. Without it, bars are shown only when stderr is a terminal.")
    return parser


def run_recipe(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int | None],
               argv: list[str] | None = None, log_format: str = "%(message)s") -> int:
    """Parse ``argv`` and call ``run(args)``; bad input exits 2 with one line, Ctrl-C exits 130.

    Returns:
        ``run``'s exit status (0 when it returns ``None``).
    """
    try:
        args = parser.parse_args(argv)
    except CliError as error:
        _fail(parser.prog, str(error))
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=log_format, stream=sys.stderr)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    if not progress_enabled(args):  # transformers' own bars too: loading and writing weights
        hf_logging.disable_progress_bar()
    try:
        return int(run(args) or 0)
    except (CliError, InputError) as error:
        _fail(parser.prog, one_line(error))
    except KeyboardInterrupt:
        sys.stderr.write(f"{parser.prog}: interrupted\n")
        raise SystemExit(130) from None
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()


def _fail(prog: str, message: str):
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(2)
