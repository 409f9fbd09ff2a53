"""The paper's experiments and the scene-llava recipe, run from a checkout (``python -m recipes.X``).

* :mod:`recipes.fig5`: Fig. 5, the original model's descriptions against skip.1 / skip.2 / skip.3
  (``--variants``, ``--preset``, ``--profile``).
* :mod:`recipes.layer_statistics`: critical and mutation layers of a scene model, and mutations on
  hallucinated words.
* :mod:`recipes.train_scene_llava` (with :mod:`recipes.pretrain_scene_vision` and the builders of
  :mod:`recipes.scene_llava`) and :mod:`recipes.evaluate_scene_llava`: scene-llava, a small
  LLaVA-1.5-style model trained on the procedural scene benchmark.

Every recipe writes under ``runs/`` by default, takes ``--no-progress`` and reports bad input in
one line with exit status 2 (:mod:`recipes.command`).
"""
