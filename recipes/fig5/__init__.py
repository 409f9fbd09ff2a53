"""The paper's skip experiment (§4.2, Fig. 5): the original model's descriptions against skip.1, skip.2, skip.3.

    python -m recipes.fig5 [--variants skip1,skip2,skip3] [--model PATH] [--images A.png B.jpg]
                           [--preset llava-1.5-7b|llava-1.5-13b] [--profile profile.json]
                           [--critical C] [--mutation M1,M2] [--keep-last K] [--mode static|online]

For each image the model greedily describes it once as it is (the original) and once per
requested variant, each through ``lvlm_skip.skipping(model, variant=...)`` around the model's own
``generate``. Where the layers come from, and what each variant skips: :mod:`recipes.fig5.layers`.

Outputs in ``--out`` (default ``runs/fig5``), written as they are produced:

* ``fig5_skip_table.md`` / ``.html`` (a subset of ``--variants``: ``fig5_skip2_table.md``, ...):
  image | original | skip.1 | skip.2 | skip.3, the words that differ from the original marked, and
  the layers each variant skipped (:mod:`recipes.fig5.tables`);
* ``results.json``: the settings, the layers and their source, and per image the descriptions;
  a rerun generates only what is missing (:mod:`recipes.fig5.results`);
* ``analysis/<image>/``: the original model's trace with the Fig. 2/3 and Fig. 4 figures;
* ``images/``: the default generated scenes.

Modules: :mod:`~recipes.fig5.cli` (options), :mod:`~recipes.fig5.layers` (which layers),
:mod:`~recipes.fig5.inputs` (images), :mod:`~recipes.fig5.generation` (model work),
:mod:`~recipes.fig5.results` (``results.json``), :mod:`~recipes.fig5.tables` and
:mod:`~recipes.fig5.word_diff` (the tables), :mod:`~recipes.fig5.run` (the order of work).
"""
