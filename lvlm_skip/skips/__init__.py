"""The paper's layer interventions (skip.1 / skip.2 / skip.3, and layer exit) inside ``generate()``.

**One semantic for every variant.** Skipping layer ``j`` at a position makes it the identity on the
residual stream there (its output is its input). If the layer runs again at a later position, its
attention reads, at the skipped position, the K/V projections of that input (CALM's propagation;
:mod:`lvlm_skip.skips.kv`).

**Variants** are declared in :mod:`lvlm_skip.variants`, the one place where their layers are
computed (``c`` critical layer, ``m`` first mutation layer, ``M`` mutation layers, ``L`` layers):
``none`` (no hook at all), ``skip1`` (``c+1 .. m-1``), ``skip2`` (``M``), ``skip3``
(``c+1 .. L-keep_last``), ``exit`` (the distribution of layer ``e = m-1``; an extension, not in the
paper), ``layers`` (an explicit list).

**Modes.** ``static`` (:mod:`lvlm_skip.skips.static`): one skip set per row for the whole
generation, from given layers, a profile, or a measurement on the prompt
(:mod:`lvlm_skip.skips.calibration`). ``online`` (:mod:`lvlm_skip.skips.online`): the critical and
mutation layers of every step are detected while it runs, and the decision applies at that step (or,
for skip1/skip3 with ``decide="lagged"``, at the next one).

Modules, one concept each: ``calibration``, ``window`` (the per-step readout), ``online``,
``static``, ``kv``, ``report`` (:class:`SkipReport`), ``controller`` (routes layer calls to the
current step). The options are :class:`lvlm_skip.config.SkipConfig`.
"""

from ..config import DECISIONS, KV_FILLS, MODES, POSITIONS, SkipConfig
from ..variants import SKIP_VARIANTS, static_skip_set
from .controller import SkipController
from .report import SkipReport, StepRecord

__all__ = [
    "DECISIONS", "KV_FILLS", "MODES", "POSITIONS", "SKIP_VARIANTS", "SkipConfig", "SkipController", "SkipReport",
    "StepRecord", "static_skip_set",
]
