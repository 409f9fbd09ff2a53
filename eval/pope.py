"""``python -m eval.pope ...`` = ``lvlm-skip pope ...`` (from a checkout).

The implementation is :mod:`lvlm_skip.benchmarks.pope.task`; the reader and the metrics
(:mod:`~lvlm_skip.data.pope`, :mod:`~lvlm_skip.benchmarks.pope.metrics`) are re-exported here.
"""

from lvlm_skip.benchmarks.pope.task import PROMPT_SUFFIXES, PopeTask  # noqa: F401
from lvlm_skip.data.pope import (  # noqa: F401
    POPE_SPLITS, PopeFormatError, PopeQuestion, find_split_files, read_pope_questions,
)
from lvlm_skip.benchmarks.pope.metrics import PopeCounts, count_pope, pope_answer, score_pope  # noqa: F401

if __name__ == "__main__":
    import sys

    from lvlm_skip.cli import main

    sys.exit(main(["pope", *sys.argv[1:]]))
