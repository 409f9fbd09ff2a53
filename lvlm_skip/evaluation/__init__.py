"""Benchmark evaluation of layer-skipping variants: one runner, tasks plugged into it.

The harness (each module one concept; dependencies point down this list):

* :mod:`~lvlm_skip.evaluation.runner`: :func:`~lvlm_skip.evaluation.runner.evaluate`, the one
  generate -> store -> merge -> score -> report loop;
* :mod:`~lvlm_skip.evaluation.task`: what a benchmark provides (items, request, score);
* :mod:`~lvlm_skip.evaluation.run_folder`, :mod:`~lvlm_skip.evaluation.fingerprint`,
  :mod:`~lvlm_skip.evaluation.lock`, :mod:`~lvlm_skip.evaluation.records`: run integrity (never mix
  runs, one writer per folder, answers that survive crashes);
* :mod:`~lvlm_skip.evaluation.variants`, :mod:`~lvlm_skip.evaluation.generation`: what a variant
  is and how it answers; :mod:`~lvlm_skip.evaluation.processes`: sharding over processes;
* :mod:`~lvlm_skip.evaluation.report`: the typed report row and the one Markdown / JSON writer;
* :mod:`~lvlm_skip.data.json_files`: the one reader of JSON data files.

Tasks and their metrics: AMBER (:mod:`~lvlm_skip.benchmarks.amber.task`,
:mod:`~lvlm_skip.data.amber`, :mod:`~lvlm_skip.benchmarks.amber.metrics`,
:mod:`~lvlm_skip.benchmarks.language`), captions (:mod:`~lvlm_skip.benchmarks.caption.task`,
:mod:`~lvlm_skip.data.coco_captions`, :mod:`~lvlm_skip.benchmarks.caption.coco_metrics`,
:mod:`~lvlm_skip.benchmarks.caption.closeness`, CHAIR in :mod:`~lvlm_skip.benchmarks.caption.chair`)
and POPE (:mod:`~lvlm_skip.benchmarks.pope.task`, :mod:`~lvlm_skip.data.pope`,
:mod:`~lvlm_skip.benchmarks.pope.metrics`). :mod:`~lvlm_skip.speed.benchmark` is
the decoding-speed benchmark. The command line is ``lvlm-skip amber|caption|pope|speed``
(:mod:`lvlm_skip.cli`). Importing this package imports nothing heavy.
"""
