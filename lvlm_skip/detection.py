"""Critical and mutation layers from an adjacent-layer JSD curve. Pure math, no transformers.

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
at a time (what online skipping uses while the forward pass runs); :func:`detect_layers` feeds
whole curves to that same detector, layer by layer, so offline analysis and online decisions can
never disagree.

**Where it runs.** The state of a row is seven numbers, updated by a few scalar comparisons per
layer, so the detector runs on the host in plain Python floats: a step's whole curve is copied from
the device once (one device-to-host copy of ``batch x L`` floats) and evaluated in microseconds. The
same definition as elementwise tensor ops costs ~35 kernel launches per layer, i.e. milliseconds per
step on a CPU and tens of launches' latency on a GPU, more than the readout it judges. When observation starts late (online mode reads out from
``window_start - 1``, so ``d`` exists from ``window_start`` on), the shallow level is built from the
first observed counted layers: the result is :func:`detect_layers` on the curve with the unobserved
layers set to NaN. Observing from ``first_layer - 1`` sees the whole definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import CRITICAL_RULES, MUTATION_RULES, DetectionConfig

TINY = 1e-30  # d_j is clamped here before its log; a level's clipping makes the value irrelevant


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


class _RowState:
    """One row's detector state: two robust levels as (sum of clipped logs, count), the current low run."""

    __slots__ = ("shallow_sum", "shallow_n", "run_sum", "run_n", "run_start", "critical", "confirmed_at")

    def __init__(self):
        self.shallow_sum = self.run_sum = 0.0  # the run becomes the plateau once confirmed
        self.shallow_n = self.run_n = 0
        self.run_start = self.critical = self.confirmed_at = 0


class CausalLayerDetector:
    """Evaluates the definitions one layer at a time for a batch of rows.

    Call :meth:`observe` for increasing layers ``j`` (not necessarily all of them: unobserved layers
    are simply not passed, or passed as NaN for some rows). After layer ``j``, :attr:`critical` holds
    the critical layer of the rows where it is confirmed, :attr:`confirmed_at` the layer that
    confirmed it, and :meth:`observe` returned which rows flag ``j`` as a mutation layer.

    Args:
        batch_size: Number of rows.
        config: The thresholds.
        device: Where the returned tensors live (default CPU).
        num_layers: ``L``; required unless ``config.last_layer_mutations`` (layer ``L`` is then
            ignored).

    Attributes:
        critical: `(batch,)` int64 tensor, the critical layer, 0 until confirmed.
        confirmed_at: `(batch,)` int64, the layer whose observation confirmed it (the last layer of the
            confirming run; 0 until confirmed): where online skipping can start.
        confirmed: `(batch,)` bool, rows whose critical layer is confirmed.
    """

    def __init__(self, batch_size: int, config: DetectionConfig, device=None, num_layers: int | None = None):
        if num_layers is None and not config.last_layer_mutations:
            raise ValueError("`num_layers` is needed to ignore the last layer (or set `last_layer_mutations=True`)")
        self.config = config
        self.num_layers = num_layers
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.rows = [_RowState() for _ in range(batch_size)]
        # the thresholds in log space: low <=> log d <= log S + log(rel_low); spike <=> log d > log P + log(spike_factor)
        self._log_low = math.log(config.rel_low)
        self._log_spike = math.log(config.spike_factor)
        self._log_clip = math.log(config.clip_factor)

    @property
    def critical(self) -> torch.Tensor:
        return torch.tensor([row.critical for row in self.rows], dtype=torch.int64, device=self.device)

    @property
    def confirmed_at(self) -> torch.Tensor:
        return torch.tensor([row.confirmed_at for row in self.rows], dtype=torch.int64, device=self.device)

    @property
    def confirmed(self) -> torch.Tensor:
        return torch.tensor([row.critical > 0 for row in self.rows], dtype=torch.bool, device=self.device)

    def counts_layer(self, layer: int) -> bool:
        """Whether ``layer`` takes part in the definition at all (``first_layer`` and last-layer rules)."""
        cfg = self.config
        return layer >= cfg.first_layer and (cfg.last_layer_mutations or layer != self.num_layers)

    def observe(self, layer: int, jsd, top1_changed=None) -> torch.Tensor:
        """Feed ``d_layer`` for every row.

        Args:
            layer: 1-based layer number ``j``, larger than the previous call's.
            jsd: `(batch,)` ``d_j`` in nats (tensor, array or list); NaN rows are not observed at this layer.
                A device tensor is copied to the host once.
            top1_changed: `(batch,)` bool, top-1 token of ``p_j`` differs from ``p_{j-1}``; needed by
                the "top1" rules.

        Returns:
            `(batch,)` bool tensor: rows for which layer ``j`` is a mutation layer.
        """
        flags = self.observe_values(layer, _host_list(jsd), None if top1_changed is None else _host_list(top1_changed))
        return torch.tensor(flags, dtype=torch.bool, device=self.device)

    def observe_values(self, layer: int, values: list[float], changed: list[bool] | None = None) -> list[bool]:
        """:meth:`observe` on host lists: ``values[b]`` is row ``b``'s ``d_layer``; returns its mutation flags."""
        cfg = self.config
        if cfg.needs_top1 and changed is None:
            raise ValueError(f"rules {cfg.critical_rule!r} / {cfg.mutation_rule!r} need `top1_changed`")
        if not self.counts_layer(layer):
            return [False] * len(self.rows)
        flags = [self._observe_row(row, layer, x, None if changed is None else bool(changed[b]))
                 for b, (row, x) in enumerate(zip(self.rows, values))]
        return flags if layer >= cfg.min_mutation_layer else [False] * len(self.rows)

    def _observe_row(self, row: _RowState, layer: int, x: float, changed: bool | None) -> bool:
        """One row, one counted layer: update the state, return whether the layer is a mutation."""
        cfg = self.config
        if x != x:  # NaN: not observed
            return False
        # 1. the value in log space and the two levels (None while empty)
        log_x = math.log(max(x, TINY))
        shallow = row.shallow_sum / row.shallow_n if row.shallow_n else None
        plateau = row.run_sum / row.run_n if row.run_n else None
        if not row.critical:
            # 2. before confirmation: low values extend the run, others enter the shallow level and end it
            low_jsd = shallow is not None and log_x <= shallow + self._log_low
            if cfg.critical_rule == "jsd":
                low = low_jsd
            elif cfg.critical_rule == "top1":
                low = not changed
            else:
                low = low_jsd and not changed
            low = low and row.shallow_n >= cfg.min_shallow_layers
            if row.run_n == 0:
                row.run_start = layer
            if low:
                row.run_sum += self._clip(log_x, plateau)
                row.run_n += 1
                if row.run_n >= cfg.patience:  # 3. confirmation: c is the run's first layer
                    row.critical, row.confirmed_at = row.run_start, layer
            else:
                row.shallow_sum += self._clip(log_x, shallow)
                row.shallow_n += 1
                row.run_sum, row.run_n = 0.0, 0
            return False
        # 4. after confirmation: a spike over the plateau level; other values enter the plateau
        spike = log_x > plateau + self._log_spike
        if not spike:
            row.run_sum += self._clip(log_x, plateau)
            row.run_n += 1
        if cfg.mutation_rule == "spike":
            return spike
        if cfg.mutation_rule == "top1":
            return bool(changed)
        return spike or bool(changed) if cfg.mutation_rule == "spike_or_top1" else spike and bool(changed)

    def _clip(self, log_x: float, level: float | None) -> float:
        """``log_x`` clipped to within ``log(clip_factor)`` of ``level`` (as is while the level is empty)."""
        if level is None:
            return log_x
        return min(max(log_x, level - self._log_clip), level + self._log_clip)


def _host_list(values) -> list:
    """A tensor, array or sequence as a flat Python list (one device-to-host copy for a device tensor)."""
    if isinstance(values, torch.Tensor):
        return values.detach().reshape(-1).tolist()
    if hasattr(values, "tolist"):
        return values.reshape(-1).tolist()
    return list(values)


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
        A :class:`LayerDetection` with ``critical`` `(...)`, ``mutation`` `(..., L)` and ``confirmed_at``
        `(...)` on ``jsd``'s device.
    """
    config = config or DetectionConfig()
    jsd = torch.as_tensor(jsd).detach()
    lead, num_layers = jsd.shape[:-1], jsd.shape[-1]
    curves = jsd.reshape(-1, num_layers).float().cpu().tolist()  # one copy: rows of L floats
    changed = None
    if top1_changed is not None:
        changed = torch.as_tensor(top1_changed).detach().reshape(-1, num_layers).bool().cpu().tolist()
    detector = CausalLayerDetector(len(curves), config, device=jsd.device, num_layers=num_layers)
    columns = [
        detector.observe_values(j, [curve[j - 1] for curve in curves], None if changed is None else [c[j - 1] for c in changed])
        for j in range(1, num_layers + 1)
    ]
    mutation = torch.tensor(columns, dtype=torch.bool).T if curves else torch.zeros(0, num_layers, dtype=torch.bool)
    return LayerDetection(
        critical=detector.critical.reshape(lead),
        mutation=mutation.reshape(*lead, num_layers).to(jsd.device),
        confirmed_at=detector.confirmed_at.reshape(lead),
    )
