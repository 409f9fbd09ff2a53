"""What happened at each decoding step: :class:`StepRecord` while generating, :class:`SkipReport` after."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import SkipConfig


@dataclass
class StepRecord:
    """One step of one sequence, filled while the step runs (tensors on the decision device).

    Step ``t`` is the forward pass that predicts generated token ``t`` (step 0 is the prefill).

    Attributes:
        prefill: Whether this step is the prefill (query length > 1, or the first call).
        skipped: `(batch, L)` bool, layer ``j`` skipped for that row at the step's predicting position.
        critical: `(batch,)` int64, the critical layer detected (0 = none / not detected).
        mutation: `(batch, L)` bool, mutation layers detected.
        exit_layer: `(batch,)` int64, the layer the distribution was taken from (``L`` = the last).
        jsd: `(batch, L)` float32, ``d_j`` observed at this step (NaN where not observed).
        layers_run: number of layers that ran for at least one row.
    """

    prefill: bool
    skipped: torch.Tensor
    critical: torch.Tensor
    mutation: torch.Tensor
    exit_layer: torch.Tensor
    jsd: torch.Tensor
    layers_run: int = 0

    @classmethod
    def empty(cls, batch: int, num_layers: int, device: torch.device, prefill: bool) -> "StepRecord":
        """A record where nothing was skipped, detected or observed yet."""
        return cls(
            prefill=prefill,
            skipped=torch.zeros(batch, num_layers, dtype=torch.bool, device=device),
            critical=torch.zeros(batch, dtype=torch.long, device=device),
            mutation=torch.zeros(batch, num_layers, dtype=torch.bool, device=device),
            exit_layer=torch.full((batch,), num_layers, dtype=torch.long, device=device),
            jsd=torch.full((batch, num_layers), float("nan"), device=device),
        )


@dataclass
class SkipReport:
    """What happened at each decoding step of the last ``generate`` / forward sequence.

    Step ``t`` is the forward pass that predicts generated token ``t`` (step 0 is the prefill).

    Attributes:
        config: The :class:`SkipConfig` used.
        num_layers: ``L``.
        skipped: `(steps, batch, L)` bool, layer ``j`` skipped for that row at that step.
        critical: `(steps, batch)` critical layer detected at that step (0 = none / not detected).
        mutation: `(steps, batch, L)` bool mutation layers detected at that step.
        exit_layer: `(steps, batch)` layer the distribution was taken from (``L`` = the last layer).
        jsd: `(steps, batch, L)` online mode: the JSD observed at each layer (NaN where not
            observed: outside the window, or skipped); static mode: all NaN (see ``calibration``).
        layers_run: `(steps,)` number of layers that ran for at least one row.
        calibration: Per row, the critical and mutation layers measured at the prefill (static
            without given layers, online skip1 without a given resume layer), else empty.
        notes: Things the user should know that are not errors, e.g. a row whose measured layers
            leave the variant nothing to skip.
    """

    config: SkipConfig
    num_layers: int
    skipped: np.ndarray
    critical: np.ndarray
    mutation: np.ndarray
    exit_layer: np.ndarray
    jsd: np.ndarray
    layers_run: np.ndarray
    calibration: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_records(
        cls, config: SkipConfig, num_layers: int, records: list[StepRecord], calibration: list[dict], notes: list[str]
    ) -> "SkipReport":
        """Stack the step records (one device-to-host copy per array)."""
        batch = records[0].skipped.shape[0] if records else 0

        def stack(name: str, shape: tuple, dtype) -> np.ndarray:
            if not records:
                return np.zeros(shape, dtype=dtype)
            return torch.stack([getattr(r, name) for r in records]).cpu().numpy()

        return cls(
            config=config,
            num_layers=num_layers,
            skipped=stack("skipped", (0, batch, num_layers), bool),
            critical=stack("critical", (0, batch), np.int64),
            mutation=stack("mutation", (0, batch, num_layers), bool),
            exit_layer=stack("exit_layer", (0, batch), np.int64),
            jsd=stack("jsd", (0, batch, num_layers), np.float32),
            layers_run=np.asarray([r.layers_run for r in records], dtype=np.int64),
            calibration=list(calibration),
            notes=list(notes),
        )

    @property
    def num_steps(self) -> int:
        return int(self.skipped.shape[0])

    def skipped_layers(self, step: int, row: int = 0) -> list[int]:
        """1-based layers skipped for ``row`` at ``step``."""
        return (np.flatnonzero(self.skipped[step, row]) + 1).tolist()

    def mean_layers_skipped(self) -> float:
        """Average number of skipped layers per step and row."""
        return float(self.skipped.sum(-1).mean()) if self.skipped.size else 0.0

    def row_layers_skipped(self, row: int, steps: int) -> float:
        """Mean layers skipped per step by ``row`` over its first ``steps`` steps (the ones that predicted its tokens).

        A row of a batch that ended early keeps stepping (on padding) until the whole batch ends; its
        later steps are not its own, and this leaves them out, so that a row gets the same figure
        alone as in a batch.
        """
        if not self.skipped.size:  # no step recorded (``none``)
            return 0.0
        mine = self.skipped[:steps, row]  # shape: (steps, L)
        return float(mine.sum(-1).mean()) if mine.size else 0.0

    def to_dict(self) -> dict:
        """JSON-ready per-step summary (layer lists, not the arrays)."""
        return {
            "config": self.config.to_dict(),
            "num_layers": self.num_layers,
            "steps": [
                {
                    "step": t,
                    "skipped": [self.skipped_layers(t, b) for b in range(self.skipped.shape[1])],
                    "critical": self.critical[t].tolist(),
                    "mutation": [(np.flatnonzero(r) + 1).tolist() for r in self.mutation[t]],
                    "exit_layer": self.exit_layer[t].tolist(),
                    "layers_run": int(self.layers_run[t]),
                }
                for t in range(self.num_steps)
            ],
            "calibration": self.calibration,
            "notes": self.notes,
        }
