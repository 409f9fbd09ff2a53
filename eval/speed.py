"""``python -m eval.speed ...`` = ``lvlm-skip speed ...`` (from a checkout).

The implementation is :mod:`lvlm_skip.speed.benchmark`, re-exported here.
"""

from lvlm_skip.speed.benchmark import SpeedConfig, SpeedRow, approximation_error, default_configs, measure  # noqa: F401

if __name__ == "__main__":
    import sys

    from lvlm_skip.cli import main

    sys.exit(main(["speed", *sys.argv[1:]]))
