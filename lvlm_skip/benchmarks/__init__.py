"""The benchmarks the harness (:mod:`lvlm_skip.evaluation`) runs: one package each.

* :mod:`~lvlm_skip.benchmarks.amber`: AMBER's generative and discriminative tasks and the official
  scorer's metrics (CHAIR, Cover, Hal, Cog; accuracy and F1);
* :mod:`~lvlm_skip.benchmarks.pope`: POPE's yes/no questions and the official scorer's metrics;
* :mod:`~lvlm_skip.benchmarks.caption`: caption quality (BLEU, METEOR, ROUGE-L, CIDEr, SPICE),
  CHAIR on COCO and closeness to a reference variant;
* :mod:`~lvlm_skip.benchmarks.language`: the word tokenizer and lemmatizer the metrics share.

Each benchmark's ``task`` module is an :class:`~lvlm_skip.evaluation.task.EvalTask`; its data files
are read by :mod:`lvlm_skip.data`.
"""
