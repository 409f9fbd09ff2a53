"""``python -m recipes.fig5``."""

import sys

from .cli import main

sys.exit(main())
