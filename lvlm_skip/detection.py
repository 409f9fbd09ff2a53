"""Critical and mutation layers from an adjacent-layer JSD curve. Pure tensor math, no transformers.

Definitions (layers are 1-based, ``d_j = JSD(p_{j-1} || p_j)`` is the change made by layer ``j``;
see :mod:`lvlm_skip.anatomy`). All thresholds are relative, so they hold whatever the scale of the
curve (a 7B LLaVA's stable JSDs are ~1e-2 nats, a random tiny model's differ):

* **peak** at layer ``j``: ``max(d_1..d_j)``, frozen once the critical layer is confirmed.
* A layer is **low** when ``d_j <= rel_low * peak``.
* **Critical layer** ``c``: the first layer ``c >= min_critical_layer`` that starts a run of
  ``patience`` low layers (``d_c..d_{c+patience-1}`` all low). The curve has dropped and stays
  low: stabilization starts at ``c``. A curve that never drops that far (text-only-like) has no
  critical layer (reported as 0), and then no mutation layers either.
* **Stable baseline** at layer ``j > c``: the mean of ``d_i`` over the layers ``c <= i < j`` that
  were not mutation layers.
* **Mutation layer**: a layer ``j`` after the confirmation (``j >= c + patience``) and
  ``j >= min_mutation_layer`` where, by ``mutation_rule``:
  ``"spike"`` the JSD spikes again: ``d_j > rel_low * peak`` and ``d_j >= spike_factor * baseline``;
  ``"top1"`` the top-1 token of ``p_j`` differs from that of ``p_{j-1}``;
  ``"spike_or_top1"`` / ``"spike_and_top1"`` their union / intersection.

The definition is causal: whether layer ``j`` is critical-confirming or a mutation depends only on
``d_1..d_j``. :class:`CausalLayerDetector` evaluates it one layer at a time (what online skipping
uses while the forward pass runs); :func:`detect_layers` runs that same detector over whole curves,
so offline analysis and online decisions can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

MUTATION_RULES = ("spike", "top1", "spike_or_top1", "spike_and_top1")


@dataclass(frozen=True)
class DetectionConfig:
    """Thresholds of the critical / mutation layer definitions (see the module docstring)."""

    rel_low: float = 0.25
    """A layer is low when its JSD is at most this fraction of the peak JSD so far."""
    patience: int = 3
    """Consecutive low layers needed to confirm the critical layer."""
    min_critical_layer: int = 2
    """Earliest layer that may be the critical layer."""
    spike_factor: float = 4.0
    """A mutation spike is at least this multiple of the stable baseline JSD."""
    mutation_rule: str = "spike"
    """One of "spike", "top1", "spike_or_top1", "spike_and_top1"."""
    min_mutation_layer: int = 0
    """Mutation layers must be at least this deep (0: anywhere after the critical layer's confirmation)."""

    def __post_init__(self):
        if not 0.0 < self.rel_low < 1.0:
            raise ValueError(f"`rel_low` (={self.rel_low}) has to be in (0, 1)")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"`patience` (={self.patience}) has to be a positive int")
        if not isinstance(self.min_critical_layer, int) or self.min_critical_layer < 1:
            raise ValueError(f"`min_critical_layer` (={self.min_critical_layer}) has to be an int >= 1")
        if not self.spike_factor >= 1.0:
            raise ValueError(f"`spike_factor` (={self.spike_factor}) has to be >= 1")
        if self.mutation_rule not in MUTATION_RULES:
            raise ValueError(f"`mutation_rule` (={self.mutation_rule!r}) has to be one of {MUTATION_RULES}")
        if not isinstance(self.min_mutation_layer, int) or self.min_mutation_layer < 0:
            raise ValueError(f"`min_mutation_layer` (={self.min_mutation_layer}) has to be an int >= 0")

    @classmethod
    def from_dict(cls, values: dict) -> "DetectionConfig":
        """Build from a dict, rejecting unknown keys with the list of known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown detection option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass(frozen=True)
class LayerDetection:
    """Detected layers for a batch of curves.

    Attributes:
        critical: `(...)` int64, the critical layer (1-based), 0 where the curve never stabilises.
        mutation: `(..., L)` bool, ``mutation[..., j - 1]`` is True when layer ``j`` is a mutation layer.
        confirmed_at: `(...)` int64, the layer whose observation confirmed the critical layer (0 = none):
            where online skipping can start.
    """

    critical: torch.Tensor
    mutation: torch.Tensor
    confirmed_at: torch.Tensor | None = None

    def first_mutation(self) -> torch.Tensor:
        """`(...)` int64: the shallowest mutation layer (1-based), 0 where there is none."""
        num_layers = self.mutation.shape[-1]
        layer_numbers = torch.arange(1, num_layers + 1, device=self.mutation.device)
        masked = torch.where(self.mutation, layer_numbers, torch.full_like(layer_numbers, num_layers + 1))
        first = masked.min(dim=-1).values
        return torch.where(first > num_layers, torch.zeros_like(first), first)

    def mutation_layers(self, index: int = 0) -> list[int]:
        """1-based mutation layers of one flattened row (``index``) as a Python list."""
        row = self.mutation.reshape(-1, self.mutation.shape[-1])[index]
        return (row.nonzero().flatten() + 1).tolist()


class CausalLayerDetector:
    """Evaluates the definitions one layer at a time for a batch of rows, in torch ops on one device.

    Call :meth:`observe` for layers ``j`` in increasing order (layers that did not run are simply not
    observed; a NaN entry means "not observed" for that row). After layer ``j``, :attr:`critical`
    holds the critical layer where it is confirmed and :attr:`confirmed_at` the layer that confirmed
    it, and :meth:`observe` returned which rows flag ``j`` as a mutation layer. Nothing is copied to
    the host.
    """

    def __init__(self, batch_size: int, config: DetectionConfig, device=None):
        self.config = config
        zeros = torch.zeros(batch_size, device=device)
        self.peak = zeros.clone()
        self.low_run = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.low_run_sum = zeros.clone()
        self.critical = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.confirmed_at = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.stable_sum = zeros.clone()
        self.stable_count = zeros.clone()

    @property
    def confirmed(self) -> torch.Tensor:
        """`(batch,)` bool: rows whose critical layer has been confirmed."""
        return self.critical > 0

    def observe(self, layer: int, jsd: torch.Tensor, top1_changed: torch.Tensor | None = None) -> torch.Tensor:
        """Feed ``d_layer`` for every row (NaN: not observed for that row).

        Args:
            layer: 1-based layer number ``j``.
            jsd: `(batch,)` ``d_j`` in nats.
            top1_changed: `(batch,)` bool, top-1 token of ``p_j`` differs from ``p_{j-1}``; needed
                by the "top1" rules.

        Returns:
            `(batch,)` bool: rows for which layer ``j`` is a mutation layer.
        """
        cfg = self.config
        jsd = torch.as_tensor(jsd, device=self.peak.device).float()
        seen = ~torch.isnan(jsd)
        value = torch.nan_to_num(jsd, nan=0.0)
        was_confirmed = self.confirmed
        # 1. before confirmation: track the peak and the run of low layers
        self.peak = torch.where(was_confirmed | ~seen, self.peak, torch.maximum(self.peak, value))
        low = (value <= cfg.rel_low * self.peak) & (layer >= cfg.min_critical_layer)
        self.low_run = torch.where(seen, torch.where(low, self.low_run + 1, 0), self.low_run)
        self.low_run_sum = torch.where(seen, torch.where(low, self.low_run_sum + value, 0.0), self.low_run_sum)
        newly = ~was_confirmed & (self.low_run >= cfg.patience) & seen
        self.critical = torch.where(newly, self.low_run.new_tensor(layer) - self.low_run + 1, self.critical)
        self.confirmed_at = torch.where(newly, self.low_run.new_tensor(layer), self.confirmed_at)
        self.stable_sum = torch.where(newly, self.low_run_sum, self.stable_sum)
        self.stable_count = torch.where(newly, self.low_run.float(), self.stable_count)
        # 2. after confirmation: spikes over the stable baseline and/or top-1 changes
        baseline = self.stable_sum / self.stable_count.clamp_min(1.0)
        spike = (value > cfg.rel_low * self.peak) & (value >= cfg.spike_factor * baseline)
        if cfg.mutation_rule == "spike":
            flagged = spike
        else:
            if top1_changed is None:
                raise ValueError(f"mutation_rule {cfg.mutation_rule!r} needs `top1_changed`")
            changed = torch.as_tensor(top1_changed, device=self.peak.device).bool()
            flagged = {"top1": changed, "spike_or_top1": spike | changed, "spike_and_top1": spike & changed}[cfg.mutation_rule]
        mutation = was_confirmed & flagged & seen & (layer >= cfg.min_mutation_layer)
        stable = was_confirmed & ~mutation & seen
        self.stable_sum = torch.where(stable, self.stable_sum + value, self.stable_sum)
        self.stable_count = torch.where(stable, self.stable_count + 1, self.stable_count)
        return mutation


def detect_layers(
    jsd: torch.Tensor,
    top1_changed: torch.Tensor | None = None,
    config: DetectionConfig | None = None,
) -> LayerDetection:
    """Critical and mutation layers of whole JSD curves (the module docstring defines them).

    Args:
        jsd: `(..., L)` adjacent-layer JSD, ``jsd[..., j - 1] = d_j``; NaN = not observed.
        top1_changed: `(..., L)` bool, needed by the "top1" mutation rules.
        config: Thresholds; defaults to ``DetectionConfig()``.

    Returns:
        A :class:`LayerDetection` with ``critical`` `(...)`, ``mutation`` `(..., L)` and ``confirmed_at``
        `(...)`, on ``jsd``'s device.
    """
    config = config or DetectionConfig()
    jsd = torch.as_tensor(jsd).float()
    lead, num_layers = jsd.shape[:-1], jsd.shape[-1]
    curves = jsd.reshape(-1, num_layers)  # shape: (rows, L)
    changed = None if top1_changed is None else torch.as_tensor(top1_changed, device=jsd.device).reshape(-1, num_layers)
    detector = CausalLayerDetector(curves.shape[0], config, device=jsd.device)
    mutation = torch.zeros(curves.shape, dtype=torch.bool, device=jsd.device)
    for j in range(1, num_layers + 1):
        mutation[:, j - 1] = detector.observe(j, curves[:, j - 1], None if changed is None else changed[:, j - 1])
    return LayerDetection(
        critical=detector.critical.reshape(lead),
        mutation=mutation.reshape(*lead, num_layers),
        confirmed_at=detector.confirmed_at.reshape(lead),
    )
