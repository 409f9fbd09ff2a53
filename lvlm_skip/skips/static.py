"""Static mode: one skip set per row for the whole generation.

The set comes from the variant's declaration (:meth:`~lvlm_skip.variants.SkipVariant.static_layers`,
registered in :mod:`~lvlm_skip.variants`) and the given layers, or from layers measured once per prompt
(:mod:`~lvlm_skip.skips.calibration`). Where it applies:

* ``positions="generated"`` (default): at the positions that predict a generated token, the prompt's
  last position (step 0) and every generated one. The rest of the prompt, image tokens included,
  runs every layer, so the generated tokens attend to a prompt read by the whole model.
* ``positions="all"``: at every position, the prompt included: the model with those layers deleted.

At a decoding step a layer that every row skips does not run at all: no later step runs it, so
nobody reads its K/V (the layer whose cache gives transformers the sequence length is the exception:
its K/V are projected). A layer that only some rows skip runs, and those rows keep their input.
"""

from __future__ import annotations

import torch

from ..anatomy import ModelAnatomy, unpack_layer_output
from ..config import SkipConfig
from .kv import keep_input_at_last_position, write_skipped_kv
from .report import StepRecord


class StaticStep:
    """One step of static mode.

    Args:
        anatomy: The model's anatomy.
        config: The variant's config (``positions``, ``kv_fill``).
        skip: `(batch, L)` bool, the rows' skip sets (shared by every step of the sequence).
        record: The step's record.
        reusable: Prefill only: calibration's layer outputs over the prompt, layer ``j`` at ``j - 1``,
            for the layers below the first skipped one.
    """

    def __init__(self, anatomy: ModelAnatomy, config: SkipConfig, skip: torch.Tensor, record: StepRecord,
                 reusable: list[torch.Tensor] | None = None):
        self.anatomy = anatomy
        self.config = config
        self.record = record
        record.skipped = skip
        self.skip_rows = skip.T.cpu()  # shape: (L, batch), host copy for the per-layer branches
        self.reusable = reusable or []
        # the prompt's other positions run every layer under positions="generated"
        self.last_position_only = record.prefill and config.positions == "generated"

    def run_layer(self, layer: int, forward, hidden: torch.Tensor, args, kwargs) -> torch.Tensor:
        """Run (or skip) 1-based ``layer`` on `(batch, seq, hidden)` ``hidden`` for this step."""
        record, rows = self.record, self.skip_rows[layer - 1]
        if layer <= len(self.reusable):
            # the calibration pass already computed this layer's output over the prompt
            record.layers_run += 1
            write_skipped_kv(self.anatomy, self.config.kv_fill, layer, forward, hidden, args, kwargs)
            return self.reusable[layer - 1]
        if bool(rows.all()) and not self.last_position_only:
            if layer in self.anatomy.mask_size_layers:
                write_skipped_kv(self.anatomy, self.config.kv_fill, layer, forward, hidden, args, kwargs)
            return hidden
        record.layers_run += 1
        out = unpack_layer_output(forward(hidden, *args, **kwargs))
        if not rows.any():
            return out
        if self.last_position_only or out.shape[1] == 1:
            return keep_input_at_last_position(out, hidden, rows)
        return torch.where(rows.to(out.device)[:, None, None], hidden, out)
