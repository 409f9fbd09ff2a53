"""The controller: starts sequences and steps, and hands every layer call to the current step."""

from __future__ import annotations

import logging

import torch

from ..anatomy import ModelAnatomy, UnsupportedModelError
from ..clock import SequenceClock, UnplaceableForwardError
from ..config import SkipConfig
from ..variants import Discard, ExitVariant, skip_variant, static_skip_set
from .calibration import calibrate
from .kv import DeferredKV
from .online import OnlineContext, OnlineSequence, online_step
from .report import SkipReport, StepRecord
from .static import StaticStep

logger = logging.getLogger(__name__)


class SkipController:
    """Runs every decoder layer of a wrapped model under a :class:`SkipConfig`.

    The model's layer ``forward`` methods are routed to :meth:`run_layer` and, in online mode, its LM
    head's output to :meth:`on_logits` (:mod:`lvlm_skip.hooks`). Where a forward falls in a sequence
    (its start, or one decoding step) is read from ``clock``, which the model's forward pre-hook
    advances (:class:`~lvlm_skip.hooks.SequenceClockHook`); the clock refuses a forward it cannot
    place. The first layer call after wrapping is checked against the anatomy's layer-call contract.
    """

    def __init__(self, anatomy: ModelAnatomy, config: SkipConfig, clock: SequenceClock):
        config.validate_for(anatomy)
        self.anatomy = anatomy
        self.config = config
        self.clock = clock
        self._placed = clock.forwards  # the clock's count at the last step begun
        self.variant = skip_variant(config.variant)
        if config.mode == "online" and self.variant.online is Discard and anatomy.has_sliding_window_layers:
            raise UnsupportedModelError(
                f"online {config.variant} is not supported on {type(anatomy.model).__name__}: it re-runs a step's late "
                "layers, and its sliding-window caches cannot be cropped back once the window is full; use static mode"
            )
        self.num_layers = anatomy.num_layers
        self.online = OnlineContext(anatomy, config, self.variant, self._window_start()) if config.mode == "online" else None
        self.needs_calibration = config.mode == "static" and not self.variant.layers_given(config)
        self._given_skip = None if self.needs_calibration else static_skip_set(config, self.num_layers)
        self._call_checked = False
        self.reset()

    @property
    def accepts_cached_prefix(self) -> bool:
        """Whether a sequence may start after a cached stock prefix of its prompt (:mod:`lvlm_skip.clock`): every
        prompt position but the last runs every layer (``positions="generated"``, always so online) and no skip set
        is measured on the prompt (calibration reads all of it)."""
        return self.config.positions == "generated" and not self.needs_calibration

    def _window_start(self) -> int:
        config, L = self.config, self.anatomy.num_layers
        if config.window_start is not None:
            return config.window_start
        first = getattr(config.detection, "first_layer", None)
        return max(1, first - 1) if first else max(1, L // 4)

    def reset(self) -> None:
        """Forget the previous sequence (called by the wrapped ``generate`` and at every sequence start)."""
        self._records: list[StepRecord] = []
        self._step = None
        self._calibration: list[dict] = []
        self._notes: list[str] = []
        self._skip: torch.Tensor | None = None  # static: (batch, L)
        self._sequence: OnlineSequence | None = None

    def end_sequence(self) -> None:
        """The sequence is over (the wrapped ``generate`` returns): write the K/V still pending."""
        if self._sequence is not None:
            self._sequence.deferred.flush_all()

    def report(self) -> SkipReport:
        """The :class:`SkipReport` of the current / last sequence."""
        calibration = self._calibration or (self._sequence.measured if self._sequence else [])
        self._note_online_no_op()
        return SkipReport.from_records(self.config, self.num_layers, self._records, calibration, self._notes)

    # -- the layer call and the head --------------------------------------------------------------------

    def run_layer(self, layer: int, forward, layer_forwards, hidden: torch.Tensor, args, kwargs) -> torch.Tensor:
        """Run (or skip) 1-based ``layer`` on ``hidden`` `(batch, seq, hidden)` for the current step."""
        if layer == 1:
            if not self._call_checked:
                self.anatomy.check_layer_call(args, kwargs)
                self._call_checked = True
            self._begin_step(hidden, kwargs, layer_forwards)
        return self._step.run_layer(layer, forward, hidden, args, kwargs)

    def on_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The LM head's output of the current step (online mode): the step's batched decisions."""
        return logits if self._step is None else self._step.finish(logits)

    def _begin_step(self, hidden: torch.Tensor, layer_kwargs: dict, layer_forwards) -> None:
        batch = hidden.shape[0]
        if self.clock.forwards == self._placed:
            raise UnplaceableForwardError(
                "the decoder ran without a call of the wrapped model (model.forward(...) or the decoder called "
                "directly?): lvlm_skip places each step by the model's own call, model(...) or generate"
            )
        self._placed = self.clock.forwards
        prefill = self.clock.position.starts_sequence
        if prefill:
            if self.clock.position.cached and not self.accepts_cached_prefix:
                raise UnplaceableForwardError(
                    f"a prefill after {self.clock.position.cached} cached prompt positions: static {self.config.variant} "
                    + ("measures its layers on the whole prompt" if self.needs_calibration else "skips at every prompt position")
                    + ", so it needs the prompt uncached"
                )
            self.reset()
        device = self.anatomy.head_device
        record = StepRecord.empty(batch, self.num_layers, device, prefill)
        if self.config.mode == "online":
            if prefill:
                self._sequence = OnlineSequence(spans=[(1, 0)] * batch, resume=[0] * batch, deferred=DeferredKV(self.anatomy))
            self._step = online_step(self.online, self._sequence, record)
        else:
            reusable = self._calibrate(hidden, layer_kwargs, layer_forwards) if prefill and self.needs_calibration else None
            if prefill and not self.needs_calibration:
                self._skip = self._rows_mask([self._given_skip] * batch, device)
            self._step = StaticStep(self.anatomy, self.config, self._skip, record, reusable)
            if self._calibration:
                record.critical = torch.tensor([c["critical"] for c in self._calibration], device=device)
            if isinstance(self.variant, ExitVariant):
                skipped = self._skip
                record.exit_layer = torch.where(skipped.any(-1), skipped.long().argmax(-1), self.num_layers)
        self._records.append(record)

    def _rows_mask(self, rows: list[list[int]], device) -> torch.Tensor:
        mask = torch.zeros(len(rows), self.num_layers, dtype=torch.bool)
        for b, layers in enumerate(rows):
            mask[b, [j - 1 for j in layers]] = True
        return mask.to(device)

    def _calibrate(self, hidden, layer_kwargs, layer_forwards) -> list[torch.Tensor]:
        """Measure each row's layers on the prompt; set the rows' skip sets; return the reusable outputs."""
        config = self.config
        keep = config.kv_fill == "project"
        measured = calibrate(self.anatomy, layer_forwards, hidden, layer_kwargs, detection=config.detection,
                             readout=config.readout, keep_outputs=keep)
        self._calibration = [row.to_dict() for row in measured.rows]
        sets = [static_skip_set(config, self.num_layers, row.critical, row.mutation) for row in measured.rows]
        for b, (row, layers) in enumerate(zip(measured.rows, sets)):
            if not layers:
                self._note(f"row {b}: measured critical layer {row.critical}, mutation layers {list(row.mutation)}: "
                           f"{config.variant} skips nothing")
        self._skip = self._rows_mask(sets, self.anatomy.head_device)
        if not keep:
            return []
        # layers 1 .. (first layer any row skips) - 1 are identical in calibration and prefill
        skipped_any = self._skip.any(0).cpu()
        reusable = int(skipped_any.long().argmax()) if skipped_any.any() else self.num_layers
        return measured.outputs[:reusable]

    def _note_online_no_op(self) -> None:
        """Online variants that need a critical layer: a note for each row no step of this generation skipped in."""
        if self.config.mode != "online" or "critical" not in getattr(self.variant, "needs", ()) or not self._records:
            return
        batch = self._records[0].skipped.shape[0]
        skipped_any = torch.zeros(batch, dtype=torch.bool)
        for record in self._records:
            skipped_any |= record.skipped.any(-1).cpu()
        for b in range(batch):
            if not skipped_any[b]:
                self._note(f"row {b}: no critical layer confirmed at any step: {self.config.variant} skips nothing")

    def _note(self, text: str) -> None:
        if text not in self._notes:
            logger.info("%s", text)
            self._notes.append(text)
