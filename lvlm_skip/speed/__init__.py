"""Decoding speed: the variants timed against the stock model, side by side in one process
(:mod:`~lvlm_skip.speed.benchmark`; ``lvlm-skip speed``)."""
