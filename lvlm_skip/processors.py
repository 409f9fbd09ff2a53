"""A transformers ``LogitsProcessor`` for a stock ``model.generate``: layer exit on a detected mutation.

    with MutationExitLogitsProcessor(model) as exit_on_mutation:
        out = model.generate(**inputs, logits_processor=[exit_on_mutation])
    exit_on_mutation.exit_layers      # per step, per row: the layer the scores came from

At every step it reads the predicting position out of every layer (full vocabulary, exact JSD),
detects the step's critical and mutation layers (:mod:`lvlm_skip.detection`), and for the rows with
a mutation replaces the scores with the readout of the layer just before the first one. Every
layer still runs, so the KV cache is the stock model's: this is the online ``exit`` variant of
:func:`lvlm_skip.wrap` without touching the model's forward. Put it first in the list: it replaces
the scores by raw logits, so processors before it would be undone.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from .anatomy import ModelAnatomy
from .detection import DetectionConfig, detect_layers
from .divergence import adjacent_js_divergence, adjacent_top1_changes
from .hooks import record_last_position_states
from .readout import stack_layer_logits


class MutationExitLogitsProcessor(LogitsProcessor):
    """Replace the scores by an earlier layer's readout where that step shows a mutation layer.

    Args:
        model: The model that ``generate`` runs (a supported architecture).
        detection: Critical / mutation thresholds.
        min_exit_layer: Never exit below this layer (1-based); rows whose exit would be shallower
            keep the model's scores.

    Attributes:
        exit_layers: One `(batch,)` tensor per step: the layer the scores came from (``L`` = stock).
    """

    def __init__(self, model, detection: DetectionConfig | None = None, min_exit_layer: int = 1):
        self.anatomy = ModelAnatomy.from_model(model)
        self.detection = detection or DetectionConfig()
        self.min_exit_layer = self.anatomy.check_layer(min_exit_layer)
        self.exit_layers: list[torch.Tensor] = []
        self._context = record_last_position_states(self.anatomy)
        self._recorder = self._context.__enter__()

    def __enter__(self) -> "MutationExitLogitsProcessor":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hooks this processor installed on the model (idempotent)."""
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Return new scores `(batch_size, config.vocab_size)`; ``scores`` is not modified in place."""
        if self._context is None:
            raise RuntimeError("MutationExitLogitsProcessor was removed; create a new one")
        if not self._recorder.calls:
            raise RuntimeError("no forward pass was recorded: pass this processor to the same model's generate")
        states = self._recorder.calls[-1]  # shape: (L + 1, batch, hidden)
        self._recorder.calls.clear()
        # 1. every layer's exact readout and the adjacent JSD of this step
        logits = stack_layer_logits(self.anatomy, states)  # shape: (L + 1, batch, vocab)
        logp = torch.log_softmax(logits.float(), dim=-1)
        jsd = adjacent_js_divergence(logp).T  # shape: (batch, L)
        found = detect_layers(jsd, adjacent_top1_changes(logp).T, self.detection)
        # 2. exit just before the first mutation layer
        first = found.first_mutation().to(scores.device)
        exit_layer = torch.where(first > 0, first - 1, torch.full_like(first, self.anatomy.num_layers))
        exit_layer = torch.where(exit_layer < self.min_exit_layer, torch.full_like(exit_layer, self.anatomy.num_layers), exit_layer)
        self.exit_layers.append(exit_layer.cpu())
        rows = torch.arange(scores.shape[0], device=scores.device)
        replaced = logits[exit_layer, rows].to(scores.dtype)[:, : scores.shape[-1]]
        keep = (exit_layer == self.anatomy.num_layers)[:, None]
        return torch.where(keep, scores, replaced)
