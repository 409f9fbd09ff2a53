"""Synthetic adjacent-layer JSD curves with a planted critical layer and planted mutation spikes.

Shapes follow the paper's Fig. 4 (LLaVA-1.5-7B) and the supplementary (13B: critical layers at
16-19). Layer convention as in :mod:`lvlm_skip.detection`: layers ``1..L``, ``d_j`` (the change made
by layer ``j``) at index ``j - 1``. Every curve is built in log space from a *base level* per layer
(what the curve would be without noise) times noise:

* ``d_1`` is large: 3-30x the shallow level (the embedding -> layer-1 change);
* **shallow stage** ``2..c-1`` at level ``S = 1`` with a random trend (up to ``trend`` nats per
  layer), optionally a boost of ``d_2``, noise (``noise``: iid log-normal, heavy-tailed Student-t
  in log space, or a correlated AR(1) walk), occasional **single-layer dips** to 3-20% of the
  level, and on some curves an **emergence bump** (the 2-4 layers before the drop rising up to
  1.5-3x, as the prediction forms);
* **drop at c** (the planted critical layer, the first layer of the plateau): sharp, or gradual
  over two layers (``d_{c-1}`` at the geometric midpoint of the shallow and plateau levels);
* **plateau** ``c..L`` at ``r x S`` (``r`` log-uniform in ``plateau_ratio``), with its own noise and,
  in some families, a slow rise towards the end;
* **planted spikes** (0-2 per curve) at layers ``c + spike_gap .. L - 1``: a planted spike is
  ``h x`` the plateau's base level at that layer, ``h`` log-uniform in ``spike_height`` (minimum 5:
  **a change at least 5x the plateau level counts as a spike**); ``"wide"`` spikes span two
  layers (both planted), ``"shoulder"`` spikes set their neighbours to 1.5-2.5x the base level
  (not spikes);
* on a fraction ``last_layer_prob`` of curves a **large last-layer change** (0.3-3x ``S``), which
  is not a mutation (the final block is specialised for the unembedding);
* **no-drop** curves (a fraction ``flat_fraction``; planted ``c = 0``, no spikes): the shallow
  stage continues to layer ``L`` (trend, dips, bumps and the last layer as above);
* the whole curve is scaled by ``10**U(-scale_decades, 0)``.

Everything is vectorised and seeded: ``make_curves(FAMILIES["llava7b"], 1000, seed=0)``.
:func:`score` compares detections with the planted layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

NOISE_MODELS = ("lognormal", "student", "ar1")
SPIKE_SHAPES = ("single", "wide", "shoulder")


@dataclass(frozen=True)
class CurveFamily:
    """Parameters of one family of synthetic curves (ranges are sampled per curve)."""

    num_layers: int = 32
    """``L``."""
    critical: tuple[int, int] = (14, 21)
    """Planted critical layer, uniform in this inclusive range."""
    noise: str = "lognormal"
    """Shallow-stage noise: "lognormal" (iid), "student" (t, 3 dof, in log space), "ar1" (correlated)."""
    shallow_sigma: tuple[float, float] = (0.25, 0.6)
    """Shallow noise scale (nats of log d), uniform per curve."""
    plateau_sigma: tuple[float, float] = (0.2, 0.45)
    """Plateau noise scale (nats of log d), uniform per curve."""
    trend: float = 0.04
    """Shallow trend: up to +-this many nats of log level per layer."""
    d2_boost: float = 0.0
    """``d_2`` is multiplied by up to ``1 + d2_boost`` (uniform)."""
    dip_prob: float = 0.06
    """Chance that a shallow layer is a single-layer dip (3-20% of its level)."""
    bump_prob: float = 0.4
    """Chance of an emergence bump before the drop."""
    gradual_prob: float = 0.35
    """Chance that the drop is gradual over two layers."""
    plateau_ratio: tuple[float, float] = (0.005, 0.08)
    """Plateau level / shallow level, log-uniform."""
    plateau_rise: float = 0.0
    """The plateau's base level rises by up to this factor from ``c`` to ``L - 1`` (0: flat)."""
    spike_counts: tuple[float, float, float] = (0.3, 0.4, 0.3)
    """Probabilities of 0, 1, 2 planted spikes."""
    spike_height: tuple[float, float] = (5.0, 100.0)
    """Spike height over the plateau's base level, log-uniform."""
    spike_shape: str = "single"
    """"single", "wide" (two layers) or "shoulder" (neighbours raised, below spike height)."""
    spike_gap: int = 2
    """Spikes are planted at layers ``>= c + spike_gap`` (after the critical layer's confirmation)."""
    last_layer_prob: float = 0.6
    """Chance of a large last-layer change (0.3-3x the shallow level)."""
    flat_fraction: float = 0.1
    """Fraction of no-drop curves (planted critical layer 0)."""
    scale_decades: float = 1.5
    """The whole curve is scaled by ``10**U(-scale_decades, 0)``."""


FAMILIES: dict[str, CurveFamily] = {
    # the paper's Fig. 4 shape for LLaVA-1.5-7B
    "llava7b": CurveFamily(),
    # 13B: 40 layers, critical layers concentrated at 16-19 (supplementary Fig. 2)
    "llava13b": CurveFamily(num_layers=40, critical=(16, 19)),
    # a 16-layer model (the shipped scene model's depth), critical layer in the middle
    "small16": CurveFamily(num_layers=16, critical=(7, 10)),
    # deliberately different: heavy-tailed noise, a boosted d_2, scale over 4 decades
    "heavy_tails": CurveFamily(noise="student", d2_boost=4.0, scale_decades=4.0),
    # correlated shallow noise, a rising plateau, shoulder-shaped spikes
    "smooth_walk": CurveFamily(noise="ar1", plateau_rise=2.0, spike_shape="shoulder"),
    # two-layer spikes, a higher and noisier plateau, every curve with a last-layer change
    "wide_spikes": CurveFamily(spike_shape="wide", plateau_ratio=(0.01, 0.1), plateau_sigma=(0.3, 0.5), last_layer_prob=1.0),
    # only no-drop (text-only-like) curves
    "flat": CurveFamily(flat_fraction=1.0),
}


@dataclass
class SyntheticCurves:
    """A batch of synthetic curves and what was planted in them.

    Attributes:
        jsd: `(n, L)` float32 ``d_1..d_L`` in nats (arbitrary scale).
        critical: `(n,)` int64 planted critical layer, 0 for no-drop curves.
        spikes: `(n, L)` bool, ``spikes[i, j - 1]`` when layer ``j`` is a planted spike.
    """

    jsd: torch.Tensor
    critical: torch.Tensor
    spikes: torch.Tensor


def _noise(family: CurveFamily, sigma: torch.Tensor, shape, generator) -> torch.Tensor:
    """`(n, L)` log-space noise with per-curve scale ``sigma`` `(n, 1)`."""
    z = torch.randn(shape, generator=generator)
    if family.noise == "student":
        # t with 3 dof = normal / sqrt(chi2_3 / 3), scaled to unit variance
        chi2 = torch.randn((*shape, 3), generator=generator).pow(2).sum(-1)
        z = z / torch.sqrt(chi2 / 3) / math.sqrt(3.0)
    elif family.noise == "ar1":
        rho = 0.7
        walk = torch.empty(shape)
        walk[:, 0] = z[:, 0]
        for j in range(1, shape[1]):
            walk[:, j] = rho * walk[:, j - 1] + math.sqrt(1 - rho**2) * z[:, j]
        z = walk
    return sigma * z


def _uniform(low: float, high: float, n: int, generator) -> torch.Tensor:
    """`(n, 1)` uniform in [low, high)."""
    return low + (high - low) * torch.rand((n, 1), generator=generator)


def make_curves(family: CurveFamily | str, n: int, seed: int = 0) -> SyntheticCurves:
    """Draw ``n`` curves of ``family`` (the module docstring describes the model)."""
    if isinstance(family, str):
        family = FAMILIES[family]
    if family.noise not in NOISE_MODELS or family.spike_shape not in SPIKE_SHAPES:
        raise ValueError(f"unknown noise {family.noise!r} or spike shape {family.spike_shape!r}")
    g = torch.Generator().manual_seed(seed)
    L = family.num_layers
    layer = torch.arange(1, L + 1, dtype=torch.float32)[None]  # shape: (1, L), layer numbers
    lo, hi = family.critical
    # 1. planted critical layer; no-drop curves get c = L + 1 (never reached), reported as 0
    c = torch.randint(lo, hi + 1, (n, 1), generator=g)  # shape: (n, 1)
    flat = torch.rand((n, 1), generator=g) < family.flat_fraction
    c = torch.where(flat, torch.full_like(c, L + 1), c)
    shallow = layer < c  # shape: (n, L)
    # 2. shallow stage: trend, d_2 boost, noise, dips, emergence bump
    trend = _uniform(-family.trend, family.trend, n, g)
    log_d = trend * (layer - 2)
    log_d[:, 1:2] += torch.log1p(family.d2_boost * torch.rand((n, 1), generator=g))
    log_d += _noise(family, _uniform(*family.shallow_sigma, n, g), (n, L), g)
    dips = shallow & (layer >= 2) & (layer <= c - 2) & (torch.rand((n, L), generator=g) < family.dip_prob)
    dips[:, 1:] &= ~dips[:, :-1]  # single-layer dips only
    log_d += torch.where(dips, math.log(10) * _uniform(-1.5, -0.7, n, g).expand(n, L), torch.zeros(n, L))
    bump = torch.rand((n, 1), generator=g) < family.bump_prob
    bump_len = torch.randint(2, 5, (n, 1), generator=g)
    bump_top = torch.log(_uniform(1.5, 3.0, n, g))
    ramp = ((layer - (c - bump_len - 1)) / bump_len).clamp(0, 1)  # 0 before the bump, 1 at c - 1
    log_d += torch.where(bump & shallow, ramp * bump_top, torch.zeros(n, L))
    # 3. d_1: the embedding -> layer-1 change, 3-30x the shallow level
    log_d[:, 0] = math.log(10) * _uniform(0.5, 1.5, n, g)[:, 0]
    # 4. plateau from c on: base level r * S (optionally rising), its own noise
    log_r = math.log(10) * _uniform(math.log10(family.plateau_ratio[0]), math.log10(family.plateau_ratio[1]), n, g)
    rise = torch.log1p(family.plateau_rise * torch.rand((n, 1), generator=g))
    progress = ((layer - c) / (L - 1 - c).clamp_min(1)).clamp(0, 1)
    plateau_base = log_r + rise * progress  # shape: (n, L), log of the plateau's base level
    plateau_noise = _uniform(*family.plateau_sigma, n, g) * torch.randn((n, L), generator=g)
    on_plateau = layer >= c
    log_d = torch.where(on_plateau, plateau_base + plateau_noise, log_d)
    # 5. gradual drops: d_{c-1} at the geometric midpoint of the shallow value and the plateau
    gradual = (torch.rand((n, 1), generator=g) < family.gradual_prob) & ~flat
    midpoint = gradual & (layer == c - 1)
    log_d = torch.where(midpoint, 0.5 * (log_d + log_r), log_d)
    # 6. spikes at layers c + spike_gap .. L - 1
    count = torch.multinomial(torch.tensor(family.spike_counts), n, replacement=True, generator=g)[:, None]
    count = torch.where(flat, torch.zeros_like(count), count)
    allowed = (layer >= c + family.spike_gap) & (layer <= L - 1)
    if family.spike_shape == "wide":
        allowed &= layer <= L - 2  # room for the second layer
    keys = torch.where(allowed, torch.rand((n, L), generator=g), torch.full((n, L), -1.0))
    rank = keys.argsort(dim=1, descending=True).argsort(dim=1)  # shape: (n, L), 0 = best key
    spikes = allowed & (rank < count)
    if family.spike_shape == "wide":
        spikes[:, 1:] |= spikes[:, :-1].clone()
        spikes &= layer <= L - 1
    height = math.log(10) * _uniform(math.log10(family.spike_height[0]), math.log10(family.spike_height[1]), n, g)
    log_d = torch.where(spikes, plateau_base + height, log_d)
    if family.spike_shape == "shoulder":
        near = torch.zeros_like(spikes)
        near[:, 1:] |= spikes[:, :-1]
        near[:, :-1] |= spikes[:, 1:]
        near &= ~spikes & on_plateau & (layer <= L - 1)
        log_d = torch.where(near, plateau_base + torch.log(_uniform(1.5, 2.5, n, g)), log_d)
    # 7. a large last-layer change on some curves
    last = torch.rand((n, 1), generator=g) < family.last_layer_prob
    log_last = math.log(10) * _uniform(math.log10(0.3), math.log10(3.0), n, g)
    log_d[:, -1:] = torch.where(last, log_last, log_d[:, -1:])
    # 8. overall scale
    log_d += math.log(10) * _uniform(-family.scale_decades, 0.0, n, g)
    critical = torch.where(flat, torch.zeros_like(c), c)[:, 0]
    return SyntheticCurves(jsd=log_d.exp().float(), critical=critical, spikes=spikes)


def with_family(name: str, **changes) -> CurveFamily:
    """A named family with some fields changed."""
    return replace(FAMILIES[name], **changes)


@dataclass
class Scores:
    """How detections compare with the planted layers.

    Attributes:
        critical_exact: Share of drop curves whose detected critical layer equals the planted one.
        critical_within_1: Share of drop curves detected within +-1 layer (0 = missed counts as wrong).
        missed_critical: Share of drop curves with no critical layer detected.
        false_critical: Share of no-drop curves with a critical layer detected (nan if none).
        spike_recall: Share of planted spikes flagged as mutation layers (at that layer).
        spike_precision: Share of flagged mutation layers that are planted spikes (1 if none flagged).
        drop_curves, flat_curves, planted_spikes, flagged: The counts behind the shares.
    """

    critical_exact: float
    critical_within_1: float
    missed_critical: float
    false_critical: float
    spike_recall: float
    spike_precision: float
    drop_curves: int
    flat_curves: int
    planted_spikes: int
    flagged: int

    def line(self) -> str:
        return (
            f"c exact {self.critical_exact:.1%}, within +-1 {self.critical_within_1:.1%}, missed {self.missed_critical:.1%}, "
            f"false c on no-drop {self.false_critical:.1%} ({self.flat_curves}); spike recall {self.spike_recall:.1%} "
            f"({self.planted_spikes}), precision {self.spike_precision:.1%} ({self.flagged})"
        )


def score(curves: SyntheticCurves, critical: torch.Tensor, mutation: torch.Tensor) -> Scores:
    """Compare detected ``critical`` `(n,)` and ``mutation`` `(n, L)` with the planted layers."""
    critical = torch.as_tensor(critical).reshape(-1).long()
    mutation = torch.as_tensor(mutation).bool()
    drop = curves.critical > 0
    hit = (critical - curves.critical).abs()
    n_drop, n_flat = int(drop.sum()), int((~drop).sum())
    planted, flagged = int(curves.spikes.sum()), int(mutation.sum())
    matched = int((mutation & curves.spikes).sum())
    return Scores(
        critical_exact=float((hit[drop] == 0).float().mean()) if n_drop else float("nan"),
        critical_within_1=float(((hit[drop] <= 1) & (critical[drop] > 0)).float().mean()) if n_drop else float("nan"),
        missed_critical=float((critical[drop] == 0).float().mean()) if n_drop else float("nan"),
        false_critical=float((critical[~drop] > 0).float().mean()) if n_flat else float("nan"),
        spike_recall=matched / planted if planted else float("nan"),
        spike_precision=matched / flagged if flagged else 1.0,
        drop_curves=n_drop,
        flat_curves=n_flat,
        planted_spikes=planted,
        flagged=flagged,
    )
