"""Critical and mutation layers from an adjacent-layer JSD curve. Pure tensor math, no transformers.

Layers are 1-based; ``d_j = JSD(p_{j-1} || p_j)`` is the change made by layer ``j`` (``p_0`` is the
embeddings' readout), and a curve is `(..., L)` with ``d_j`` at index ``j - 1`` (see
:mod:`lvlm_skip.anatomy`). Definitions, with the :class:`DetectionConfig` fields in ``code``:

* **Counted layers.** Layer ``j`` takes part when it was observed (a NaN ``d_j`` is "not observed":
  outside the online window, or skipped), ``j >= first_layer`` (default 2: ``d_1``, the embedding ->
  layer-1 change, is large for every token and says nothing about stabilisation), and ``j < L``
  unless ``last_layer_mutations`` (the last block of Llama-family models is specialised for the
  unembedding and changes the distribution a lot for every token). Uncounted layers change nothing:
  they neither extend nor break a run, nor enter a level.
* **Robust level** of a sequence of values ``v_1, v_2, ...``: the mean of their logarithms, where each
  value enters clipped to ``[level / clip_factor, level * clip_factor]`` of the level before it (the
  first value enters as is); reported as ``exp`` of that mean. It is a geometric mean, hence
  scale-equivariant, and one outlier moves it by at most ``clip_factor ** (1 / n)`` whatever its
  size (a boosted ``d_2``, an exact zero), in O(1) state and a handful of elementwise ops per value,
  unlike a running median.
* **Shallow level** ``S_j``: the robust level of the counted layers ``<= j`` before the critical
  layer's confirmation that were not low (the rapid-evolution stage; dips are left out).
* A counted layer ``j`` before confirmation is **low** when at least ``min_shallow_layers`` values
  define ``S_{j-1}`` and, by ``critical_rule``: ``"jsd"`` ``d_j <= rel_low * S_{j-1}``; ``"top1"`` the
  top-1 token of ``p_j`` equals that of ``p_{j-1}``; ``"jsd_and_top1"`` both.
* **Critical layer** ``c``: the first layer of the first run of ``patience`` consecutive counted low
  layers; it is *confirmed* at the run's last layer. ``d_c`` is already low: the curve drops at
  ``c`` and stays low (stabilisation starts at ``c``). A curve that never drops that far
  (text-only-like) has no critical layer, reported as 0, and then no mutation layers either.
* **Plateau level** ``P_j``: the robust level of the confirming run's values and of every later
  counted layer ``<= j`` that is not a spike. Once confirmed, the critical layer never changes and
  "low" is no longer tested (hysteresis: leaving the plateau takes a spike, not a value over
  ``rel_low * S``).
* A counted layer ``j`` after confirmation is a **spike** when ``d_j > spike_factor * P_{j-1}``.
* **Mutation layer**: a counted layer ``j`` after confirmation with ``j >= min_mutation_layer`` where,
  by ``mutation_rule``: ``"spike"`` it is a spike; ``"top1"`` the top-1 token of ``p_j`` differs from
  that of ``p_{j-1}``; ``"spike_or_top1"`` / ``"spike_and_top1"`` their union / intersection.

Every threshold is a ratio, so a curve scaled by any factor gives the same detections (up to float
rounding, and for ``d_j >= 1e-30``). The defaults were chosen on synthetic curves shaped like the
paper's Fig. 4 (``tests/synthetic_curves.py``), not on any one model's curves. The definition is causal: whether layer ``j`` is critical-confirming or a mutation depends only on
``d_1..d_j`` (and the top-1 changes up to ``j``). :class:`CausalLayerDetector` evaluates it one layer
at a time on torch tensors (what online skipping uses while the forward pass runs);
:func:`detect_layers` feeds whole curves to that same detector, layer by layer, so offline analysis
and online decisions can never disagree. When observation starts late (online mode reads out from
``window_start - 1``, so ``d`` exists from ``window_start`` on), the shallow level is built from the
first observed counted layers: the result is :func:`detect_layers` on the curve with the unobserved
layers set to NaN. Observing from ``first_layer - 1`` sees the whole definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

CRITICAL_RULES = ("jsd", "top1", "jsd_and_top1")
MUTATION_RULES = ("spike", "top1", "spike_or_top1", "spike_and_top1")
TINY = 1e-30  # d_j is clamped here before its log; a level's clipping makes the value irrelevant


@dataclass(frozen=True)
class DetectionConfig:
    """Thresholds of the critical / mutation layer definitions (see the module docstring)."""

    first_layer: int = 2
    """First layer whose JSD counts (2: the embedding -> layer-1 change d_1 is ignored)."""
    min_shallow_layers: int = 3
    """Shallow-stage values needed to define the shallow level before any layer may be low."""
    rel_low: float = 0.2
    """A layer is low when its JSD is at most this fraction of the shallow level."""
    patience: int = 2
    """Consecutive low layers that confirm the critical layer (the first of them)."""
    spike_factor: float = 4.0
    """After confirmation, a spike is a JSD above this multiple of the plateau level."""
    clip_factor: float = 10.0
    """A value enters a robust level clipped to [level / clip_factor, level * clip_factor]."""
    critical_rule: str = "jsd"
    """What makes a layer low: "jsd", "top1" (top-1 token unchanged) or "jsd_and_top1"."""
    mutation_rule: str = "spike"
    """One of "spike", "top1", "spike_or_top1", "spike_and_top1"."""
    min_mutation_layer: int = 0
    """Mutation layers must be at least this deep (0: anywhere after the critical layer's confirmation)."""
    last_layer_mutations: bool = False
    """Count the last layer L like the others (False: L, which changes every token, is ignored)."""

    def __post_init__(self):
        for name in ("first_layer", "min_shallow_layers", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` (={value}) has to be a positive int")
        if not 0.0 < self.rel_low < 1.0:
            raise ValueError(f"`rel_low` (={self.rel_low}) has to be in (0, 1)")
        if not self.spike_factor >= 1.0:
            raise ValueError(f"`spike_factor` (={self.spike_factor}) has to be >= 1")
        if not self.clip_factor > 1.0:
            raise ValueError(f"`clip_factor` (={self.clip_factor}) has to be > 1")
        if self.critical_rule not in CRITICAL_RULES:
            raise ValueError(f"`critical_rule` (={self.critical_rule!r}) has to be one of {CRITICAL_RULES}")
        if self.mutation_rule not in MUTATION_RULES:
            raise ValueError(f"`mutation_rule` (={self.mutation_rule!r}) has to be one of {MUTATION_RULES}")
        if not isinstance(self.min_mutation_layer, int) or self.min_mutation_layer < 0:
            raise ValueError(f"`min_mutation_layer` (={self.min_mutation_layer}) has to be an int >= 0")
        if not isinstance(self.last_layer_mutations, bool):
            raise ValueError(f"`last_layer_mutations` (={self.last_layer_mutations!r}) has to be a bool")

    @classmethod
    def from_dict(cls, values: dict) -> "DetectionConfig":
        """Build from a dict, rejecting unknown keys with the list of known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown detection option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    @classmethod
    def never(cls) -> "DetectionConfig":
        """Detection that runs every op but never confirms a critical layer, hence never acts."""
        return cls(patience=10**9, rel_low=1e-9, spike_factor=1e12)

    @property
    def needs_top1(self) -> bool:
        """Whether the rules read the top-1 changes."""
        return self.critical_rule != "jsd" or self.mutation_rule != "spike"


@dataclass(frozen=True)
class LayerDetection:
    """Detected layers for a batch of curves.

    Attributes:
        critical: `(...)` int64, the critical layer (1-based), 0 where the curve never stabilises.
        mutation: `(..., L)` bool, ``mutation[..., j - 1]`` is True when layer ``j`` is a mutation layer.
        confirmed_at: `(...)` int64, the layer whose observation confirmed the critical layer (0 = none):
            where online skipping can start. None when not computed.
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
    """Evaluates the definitions one layer at a time for a batch of rows, in torch on one device.

    Call :meth:`observe` for increasing layers ``j`` (not necessarily all of them: unobserved
    layers are simply not passed, or passed as NaN for some rows). After layer ``j``,
    :attr:`critical` holds the critical layer of the rows where it is confirmed, and
    :meth:`observe` returned which rows flag ``j`` as a mutation layer.

    Hot-path contract: ``observe`` runs a fixed sequence of about 35 small elementwise ops on
    `(batch,)` / `(2, batch)` tensors (no host synchronisation, no ``.item()``, no Python branch on
    tensor values; the branches are on ``layer`` and the config only), and updates preallocated
    state tensors in place, so it can be enqueued while the forward pass runs and captured in a
    CUDA graph. Because the state is updated in place, clone :attr:`critical` / :attr:`confirmed`
    to keep a snapshot.

    Args:
        batch_size: Number of rows.
        config: The thresholds.
        device: Where the state lives (default CPU); ``observe`` inputs are moved there.
        num_layers: ``L``; required unless ``config.last_layer_mutations`` (layer ``L`` is then
            ignored).

    Attributes:
        critical: `(batch,)` int64, the critical layer, 0 until confirmed.
        confirmed_at: `(batch,)` int64, the layer whose observation confirmed it (the last layer of the
            confirming run; 0 until confirmed): where online skipping can start.
        confirmed: `(batch,)` bool, rows whose critical layer is confirmed.
        log_sum: `(2, batch)` float32, sums of the clipped log values of the shallow level (row 0)
            and of the current low run, then the plateau level (row 1).
        count: `(2, batch)` float32, how many values each sum holds.
        run_start: `(batch,)` int64, the first layer of the current low run.
    """

    def __init__(self, batch_size: int, config: DetectionConfig, device=None, num_layers: int | None = None):
        if num_layers is None and not config.last_layer_mutations:
            raise ValueError("`num_layers` is needed to ignore the last layer (or set `last_layer_mutations=True`)")
        self.config = config
        self.num_layers = num_layers
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.log_sum = torch.zeros(2, batch_size, device=self.device)
        self.count = torch.zeros(2, batch_size, device=self.device)
        self.run_start = torch.zeros(batch_size, dtype=torch.int64, device=self.device)
        self.critical = torch.zeros(batch_size, dtype=torch.int64, device=self.device)
        self.confirmed_at = torch.zeros(batch_size, dtype=torch.int64, device=self.device)
        self.confirmed = torch.zeros(batch_size, dtype=torch.bool, device=self.device)
        # views of the state rows, made once (the state is only ever updated in place)
        self._shallow_count, self._run_count = self.count.unbind()
        self._run_sum = self.log_sum[1]
        # shape: (2, 1); log of the multiples of the levels that make a layer low / a spike
        self._log_factors = torch.tensor([[math.log(config.rel_low)], [math.log(config.spike_factor)]], device=self.device)
        self._log_clip = math.log(config.clip_factor)

    def counts_layer(self, layer: int) -> bool:
        """Whether ``layer`` takes part in the definition at all (``first_layer`` and last-layer rules)."""
        cfg = self.config
        return layer >= cfg.first_layer and (cfg.last_layer_mutations or layer != self.num_layers)

    def observe(self, layer: int, jsd: torch.Tensor, top1_changed: torch.Tensor | None = None) -> torch.Tensor:
        """Feed ``d_layer`` for every row.

        Args:
            layer: 1-based layer number ``j``, larger than the previous call's.
            jsd: `(batch,)` ``d_j`` in nats, any float dtype; NaN rows are not observed at this layer.
            top1_changed: `(batch,)` bool, top-1 token of ``p_j`` differs from ``p_{j-1}``; needed by
                the "top1" rules.

        Returns:
            `(batch,)` bool, a new tensor: rows for which layer ``j`` is a mutation layer.
        """
        cfg = self.config
        if cfg.needs_top1 and top1_changed is None:
            raise ValueError(f"rules {cfg.critical_rule!r} / {cfg.mutation_rule!r} need `top1_changed`")
        if not self.counts_layer(layer):
            return torch.zeros_like(self.confirmed)
        # 1. the value in log space; a NaN (not observed) fails every comparison below
        x = jsd.detach().to(self.device, torch.float32)
        log_x = x.clamp_min(TINY).log_()  # shape: (batch,)
        level = self.log_sum / self.count  # shape: (2, batch), log S and log P; NaN while empty
        limits = level + self._log_factors  # shape: (2, batch), log(rel_low * S) and log(spike_factor * P)
        low_jsd, not_spike = (log_x <= limits).unbind()
        # 2. before confirmation: is the layer low? (S needs min_shallow_layers values first)
        open_rows = (x == x) & ~self.confirmed
        if cfg.critical_rule == "jsd":
            low = low_jsd & open_rows
        elif cfg.critical_rule == "top1":
            low = ~top1_changed.to(self.device) & open_rows
        else:
            low = low_jsd & ~top1_changed.to(self.device) & open_rows
        low &= self._shallow_count >= cfg.min_shallow_layers
        ends_run = open_rows ^ low  # open and not low: enters S, empties the run
        # 3. after confirmation: a spike over the plateau level, and the rule's mutation flag
        spike = self.confirmed & (log_x > limits[1])
        if cfg.mutation_rule == "spike":
            mutation = spike
        else:
            changed = self.confirmed & (x == x) & top1_changed.to(self.device)
            mutation = {"top1": changed, "spike_or_top1": spike | changed, "spike_and_top1": spike & changed}[cfg.mutation_rule]
        # 4. robust levels: the value, clipped around each level, enters S (open, not low) or the
        #    run / plateau (low, or confirmed and not a spike); a value that ends a run empties it
        enters = torch.stack([ends_run, low | (self.confirmed & not_spike)])  # shape: (2, batch)
        clipped = log_x.fmax(level - self._log_clip).fmin(level + self._log_clip)  # shape: (2, batch)
        self.run_start.masked_fill_(self._run_count == 0, layer)
        self.log_sum.add_(clipped.masked_fill_(~enters, 0.0))
        self.count.add_(enters)
        self._run_sum.masked_fill_(ends_run, 0.0)
        self._run_count.masked_fill_(ends_run, 0.0)
        # 5. confirmation once the run holds `patience` low layers; c is its first layer
        newly = low & (self._run_count >= cfg.patience)
        torch.where(newly, self.run_start, self.critical, out=self.critical)
        self.confirmed_at.masked_fill_(newly, layer)
        self.confirmed |= newly
        if layer < cfg.min_mutation_layer:
            return torch.zeros_like(mutation)
        return mutation


def detect_layers(
    jsd,
    top1_changed=None,
    config: DetectionConfig | None = None,
) -> LayerDetection:
    """Critical and mutation layers of whole JSD curves (the module docstring defines them).

    Feeds every layer, in order, to one :class:`CausalLayerDetector` (NaN entries are unobserved
    layers of that row), so the result equals what online detection decides layer by layer.

    Args:
        jsd: `(..., L)` adjacent-layer JSD, ``jsd[..., j - 1] = d_j``; tensor or numpy, any float dtype.
        top1_changed: `(..., L)` bool, needed by the "top1" rules.
        config: Thresholds; defaults to ``DetectionConfig()``.

    Returns:
        A :class:`LayerDetection` with ``critical`` `(...)` and ``mutation`` `(..., L)` on ``jsd``'s device.
    """
    config = config or DetectionConfig()
    jsd = torch.as_tensor(jsd).detach()
    lead, num_layers = jsd.shape[:-1], jsd.shape[-1]
    curves = jsd.reshape(-1, num_layers).float()  # shape: (rows, L)
    changed = None if top1_changed is None else torch.as_tensor(top1_changed, device=jsd.device).reshape(-1, num_layers).bool()
    detector = CausalLayerDetector(curves.shape[0], config, device=jsd.device, num_layers=num_layers)
    flags = [
        detector.observe(j, curves[:, j - 1], None if changed is None else changed[:, j - 1])
        for j in range(1, num_layers + 1)
    ]
    return LayerDetection(
        critical=detector.critical.reshape(lead),
        mutation=torch.stack(flags, dim=-1).reshape(*lead, num_layers),
        confirmed_at=detector.confirmed_at.reshape(lead),
    )
