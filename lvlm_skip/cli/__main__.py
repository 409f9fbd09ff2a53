"""``python -m lvlm_skip.cli`` = ``lvlm-skip``."""

import sys

from . import main

sys.exit(main())
