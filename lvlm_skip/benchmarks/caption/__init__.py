"""Caption quality: :class:`~lvlm_skip.benchmarks.caption.task.CaptionTask`, the COCO caption metrics
(:mod:`~lvlm_skip.benchmarks.caption.coco_metrics`), CHAIR (:mod:`~lvlm_skip.benchmarks.caption.chair`)
and closeness to a reference variant (:mod:`~lvlm_skip.benchmarks.caption.closeness`)."""
