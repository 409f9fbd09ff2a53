"""Benchmark evaluators (AMBER, captioning) built on top of :mod:`lvlm_skip`."""
