"""AMBER (Wang et al., 2023): :class:`~lvlm_skip.benchmarks.amber.task.AmberTask` and its metrics
(:mod:`~lvlm_skip.benchmarks.amber.metrics`, the official scorer's definitions)."""
