"""``python -m eval.amber ...`` = ``lvlm-skip amber ...`` (from a checkout).

The implementation is :mod:`lvlm_skip.benchmarks.amber.task`; the metrics are
:mod:`lvlm_skip.benchmarks.amber.metrics`, re-exported here.
"""

from lvlm_skip.benchmarks.amber.task import TASK_COLUMNS, AmberTask  # noqa: F401
from lvlm_skip.data.amber import AmberFormatError, load_amber, load_queries  # noqa: F401
from lvlm_skip.benchmarks.amber.metrics import normalize_yes_no, score_discriminative, score_generative  # noqa: F401
from lvlm_skip.benchmarks.language import pick_backend  # noqa: F401

if __name__ == "__main__":
    import sys

    from lvlm_skip.cli import main

    sys.exit(main(["amber", *sys.argv[1:]]))
