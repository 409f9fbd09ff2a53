"""Fig. 5: original vs skip.1, skip.2 and skip.3 side by side (see :mod:`recipes.skip_experiments`).

    python -m recipes.fig5 [--model PATH] [--images A.png B.jpg] [--preset llava-1.5-7b]
"""

from __future__ import annotations

import sys

from recipes.skip_experiments import SKIP_VARIANTS
from recipes.skip_experiments import main as _main


def main(argv: list[str] | None = None) -> int:
    return _main(argv, variants=SKIP_VARIANTS, prog="python -m recipes.fig5")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
