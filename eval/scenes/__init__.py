"""The scene benchmark, from a checkout: ``python -m eval.scenes ...`` = ``lvlm-skip scenes ...``.

The implementation is :mod:`lvlm_skip.scenes`; this package only re-exports it.
"""

from lvlm_skip.scenes import *  # noqa: F401,F403
from lvlm_skip.scenes import __all__  # noqa: F401
