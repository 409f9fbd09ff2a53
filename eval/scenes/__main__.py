"""``python -m eval.scenes ...`` = ``lvlm-skip scenes ...`` (from a checkout)."""

import sys

from lvlm_skip.cli import main

sys.exit(main(["scenes", *sys.argv[1:]]))
