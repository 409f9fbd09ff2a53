"""Training and evaluation recipes.

scene-llava: a small LLaVA-1.5-style model trained on the procedural scene benchmark.
"""
