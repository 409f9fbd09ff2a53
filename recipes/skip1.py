"""skip.1 alone: original vs skip.1 descriptions (see :mod:`recipes.skip_experiments`).

    python -m recipes.skip1 [--model PATH] [--images A.png B.jpg] [--critical C --mutation M1,M2]

Writes ``skip1_table.md`` / ``.html``, ``results.json`` and ``analysis/`` into ``--out``
(default shared with the other skip recipes, so their runs reuse each other's generations).
"""

from __future__ import annotations

import sys

from recipes.skip_experiments import main as _main


def main(argv: list[str] | None = None) -> int:
    return _main(argv, variants=("skip1",), prog="python -m recipes.skip1")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
