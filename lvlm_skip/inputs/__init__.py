"""What a run reads in: models, images and paths, each checked with a one-line error.

* :mod:`~lvlm_skip.inputs.models`: :func:`~lvlm_skip.inputs.models.load_model` (a local folder, or a
  built-in random model), devices and dtypes, chat prompts;
* :mod:`~lvlm_skip.inputs.builtin_models`: the built-in random models (``tiny``, ``bench-llava``);
* :mod:`~lvlm_skip.inputs.images`: decoding an image file, with a pixel limit;
* :mod:`~lvlm_skip.inputs.image_sets`: ``--images`` folder / glob / list specs;
* :mod:`~lvlm_skip.inputs.paths`: output folders and paths that must stay under a root.

The package itself imports nothing, so the command line reads :data:`BUILTIN_MODELS` without torch.
"""

#: ``--model`` names that build a random model offline instead of reading a folder
#: (:mod:`lvlm_skip.inputs.builtin_models`).
BUILTIN_MODELS = ("tiny", "bench-llava", "bench-llava-7b")
