"""Training/evaluation recipes: scene-llava, a small LLaVA-1.5-style model for the scene benchmark."""
