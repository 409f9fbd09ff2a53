"""skip.3 alone: original vs skip.3 descriptions (see :mod:`recipes.skip_experiments`).

    python -m recipes.skip3 [--model PATH] [--images A.png B.jpg] [--critical C --mutation M1,M2]

Writes ``skip3_table.md`` / ``.html``, ``results.json`` and ``analysis/`` into ``--out``
(default shared with the other skip recipes, so their runs reuse each other's generations).
"""

from __future__ import annotations

import sys

from recipes.skip_experiments import main as _main


def main(argv: list[str] | None = None) -> int:
    return _main(argv, variants=("skip3",), prog="python -m recipes.skip3")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
