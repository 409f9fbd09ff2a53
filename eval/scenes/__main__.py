"""CLI: ``python -m eval.scenes --out DIR --n-images N --seed S [--split SPLIT]``."""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

from eval.scenes.export import export
from eval.scenes.generator import SPLITS


def main(argv: Sequence[str] | None = None) -> int:
    """Export a scene benchmark folder (AMBER + COCO format)."""
    ap = argparse.ArgumentParser(prog="python -m eval.scenes", description=main.__doc__)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--n-images", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--split", default="test", choices=SPLITS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    export(args.out, args.n_images, args.seed, args.split)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
