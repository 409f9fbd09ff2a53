"""``python -m eval.caption ...`` = ``lvlm-skip caption ...`` (from a checkout).

The implementation is :mod:`lvlm_skip.benchmarks.caption.task`; its metric functions are re-exported here.
"""

from lvlm_skip.benchmarks.caption.task import CaptionTask, chair  # noqa: F401
from lvlm_skip.data.coco_captions import CaptionDataError, load_captions  # noqa: F401
from lvlm_skip.benchmarks.caption.closeness import closeness_to_reference_variant  # noqa: F401
from lvlm_skip.benchmarks.caption.coco_metrics import coco_caption_scores, coco_caption_scores_multi  # noqa: F401

chair_scores = chair.chair_scores

if __name__ == "__main__":
    import sys

    from lvlm_skip.cli import main

    sys.exit(main(["caption", *sys.argv[1:]]))
