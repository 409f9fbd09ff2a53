"""``lvlm-skip scenes``: generate the procedural scene benchmark (AMBER, COCO and POPE format).

Writes images with exactly known content (objects, colours, counts, positions) and their
annotations: an AMBER folder (``annotations.json``, ``query/``, ``relation.json``,
``safe_words.txt``), COCO ``captions.json`` / ``instances.json``, ``vqa.json``, ``scenes.json``
(see :mod:`lvlm_skip.scenes.export`) and POPE's three question files in ``pope/``
(:mod:`lvlm_skip.scenes.pope`).
"""

from __future__ import annotations

import argparse
import logging

from .options import add_output_arguments, positive_int

logger = logging.getLogger("lvlm_skip.cli")

HELP = "Generate the procedural scene benchmark (AMBER / COCO / POPE format) with known ground truth."
#: The scene splits (:data:`lvlm_skip.scenes.SPLITS`), repeated here so that --help imports nothing.
SPLITS = ("train", "test", "test-consistent", "test-breaking", "uniform")


def add_arguments(p) -> None:
    """The scenes subcommand's options."""
    add_output_arguments(p, default="runs/scenes", resumable=False)
    p.add_argument("--n-images", type=positive_int, default=200, help="Number of scenes.")
    p.add_argument("--seed", type=int, default=1000, help="Seed of the split (scene i is a pure function of split, seed, i).")
    p.add_argument("--split", default="test", choices=SPLITS,
                   help="test / train: with the language priors; test-consistent / test-breaking: priors always "
                   "kept / always broken; uniform: no priors.")
    p.add_argument("--overwrite", action="store_true",
                   help="Replace the benchmark already in --out (its files are deleted first); without it a "
                   "non-empty --out is refused.")
    p.add_argument("--pope", action=argparse.BooleanOptionalAction, default=True,
                   help="Also write POPE question files pope/scenes_pope_{random,popular,adversarial}.json "
                   "(images relative to images/).")


def run(args) -> int:
    """The ``scenes`` subcommand."""
    from ..inputs.paths import check_output_dir

    out = check_output_dir(args.out)
    from ..scenes.export import export

    export(out, args.n_images, args.seed, args.split, pope=args.pope, overwrite=args.overwrite)
    return 0
