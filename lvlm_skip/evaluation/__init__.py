"""Evaluation of generated text: caption metrics and benchmarks."""
