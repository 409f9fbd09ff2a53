"""A transformers ``LogitsProcessor`` for a stock ``model.generate``: layer exit on a detected mutation.

    with MutationExitLogitsProcessor(model) as exit_on_mutation:
        out = model.generate(**inputs, logits_processor=[exit_on_mutation])
    exit_on_mutation.exit_layers      # per step, per row: the layer the scores came from

At every step it reads the predicting position out of the window of layers, detects the step's
critical and mutation layers (:mod:`lvlm_skip.detection`) exactly as online ``exit`` does (the same
code, :func:`~lvlm_skip.skips.window.detect_window`, the same defaults), and for the rows with a
mutation at ``m`` moves the scores to the readout of layer ``e = m - 1``. Every layer still runs, so
the KV cache is the stock model's.

**It composes with the other processors.** transformers runs the processors a user passes after its
own (repetition penalty, ``min_new_tokens``, ``bad_words_ids``, ``suppress_tokens``) and before the
sampling warpers (temperature, top-k/p). So the exit is applied as a *delta*: the scores it receives
plus ``logits_e - logits_L`` (the exit layer's logits minus the model's own), which keeps what the
earlier processors did (a masked token stays at ``-inf``, a penalty stays applied) and leaves the
warpers to act on the result. On a row without processors before it, this is the exit layer's
logits, as online ``exit`` emits (tested token for token).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from .anatomy import ModelAnatomy
from .config import ReadoutName
from .detection import DetectionConfig
from .hooks import LastPositionHooks
from .readout import readout_logits
from .skips.window import WindowReadout, detect_window


class MutationExitLogitsProcessor(LogitsProcessor):
    """Move the scores to an earlier layer's readout where the step shows a mutation layer.

    Args:
        model: The model that ``generate`` runs (a supported architecture).
        detection: Critical / mutation thresholds (default ``DetectionConfig()``, as ``wrap``).
        candidates: Size of the step's candidate vocabulary for the detection readout (0: exact), as
            ``wrap(..., mode="online", candidates=...)``.
        window_start: First layer read out (default: the detector's ``first_layer - 1``, as ``wrap``).
        readout: ``"normed"`` or ``"raw"`` for the detection curves.
        min_exit_layer: Never exit below this layer; such rows keep their scores.

    Attributes:
        exit_layers: One `(batch,)` tensor per step: the layer the scores came from (``L`` = stock).
    """

    def __init__(self, model, detection: DetectionConfig | None = None, *, candidates: int = 256,
                 window_start: int | None = None, readout: ReadoutName = "normed", min_exit_layer: int = 1):
        self.anatomy = ModelAnatomy.from_model(model)
        self.detection = detection or DetectionConfig()
        if not isinstance(candidates, int) or candidates < 0:
            raise ValueError(f"`candidates` (={candidates!r}) has to be an int >= 0")
        self.window_start = self.anatomy.check_layer(window_start if window_start is not None
                                                     else max(1, self.detection.first_layer - 1))
        self.min_exit_layer = self.anatomy.check_layer(min_exit_layer)
        self.readout = WindowReadout(self.anatomy, readout=readout, candidates=candidates)
        self.exit_layers: list[torch.Tensor] = []
        self._hooks = LastPositionHooks(self.anatomy)

    def __enter__(self) -> "MutationExitLogitsProcessor":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hooks this processor installed on the model (idempotent)."""
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Return new scores `(batch_size, config.vocab_size)`; ``scores`` is not modified in place."""
        if self._hooks is None:
            raise RuntimeError("MutationExitLogitsProcessor was removed; create a new one")
        calls = self._hooks.recorder.calls
        if not calls:
            raise RuntimeError("no forward pass was recorded: pass this processor to the same model's generate")
        states = calls[-1]  # shape: (L + 1, batch, hidden), un-normed
        calls.clear()
        anatomy, L = self.anatomy, self.anatomy.num_layers
        # 1. the model's own logits of the step, and the detection on the window (as online exit)
        final = readout_logits(anatomy, states[L])  # shape: (batch, vocab)
        first = self.window_start - 1
        _, found = detect_window(self.readout, states[first:], first, final, self.detection)
        first_mutation = found.first_mutation().cpu()
        exit_layer = torch.where(first_mutation > 0, first_mutation - 1, torch.full_like(first_mutation, L))
        exit_layer = torch.where(exit_layer < self.min_exit_layer, torch.full_like(exit_layer, L), exit_layer)
        self.exit_layers.append(exit_layer)
        rows = (exit_layer < L).nonzero().flatten().tolist()
        if not rows:
            return scores
        # 2. the exit as a delta on the scores earlier processors produced
        exits = readout_logits(anatomy, states[exit_layer[rows], rows])  # shape: (rows, vocab)
        delta = (exits.float() - final[rows].float())[:, : scores.shape[-1]].to(scores.device)
        new = scores.clone()
        new[rows] = scores[rows] + delta.to(scores.dtype)
        return new
