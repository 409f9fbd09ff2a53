"""POPE (Li et al., 2023): :class:`~lvlm_skip.benchmarks.pope.task.PopeTask` and its metrics
(:mod:`~lvlm_skip.benchmarks.pope.metrics`, the official scorer's answer rule)."""
