"""skip.2 alone: original vs skip.2 descriptions (see :mod:`recipes.skip_experiments`).

    python -m recipes.skip2 [--model PATH] [--images A.png B.jpg] [--critical C --mutation M1,M2]

Writes ``skip2_table.md`` / ``.html``, ``results.json`` and ``analysis/`` into ``--out``
(default shared with the other skip recipes, so their runs reuse each other's generations).
"""

from __future__ import annotations

import sys

from recipes.skip_experiments import main as _main


def main(argv: list[str] | None = None) -> int:
    return _main(argv, variants=("skip2",), prog="python -m recipes.skip2")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
