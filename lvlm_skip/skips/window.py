"""Reading a step's window of last-position states out, and the curve it gives.

At every online step the states ``h_{w-1}, h_w, ..., h_L`` of the predicting position (``w`` =
``window_start``) are read out over a *candidate vocabulary*: the top-``k`` tokens of one
full-vocabulary readout, shared by all the window's layers of that step so that the distributions
stay comparable. The JSD between adjacent layers is then taken between distributions renormalised
on those ``k`` tokens (``k * hidden`` MACs per layer instead of ``vocab * hidden``). ``k = 0`` reads
the full vocabulary: exact, at one LM head per layer.

Where the full-vocabulary readout comes from depends on the path:

* after the forward (``exit``, ``skip2``, lagged ``skip1``/``skip3``, detect-only): the model's own
  final logits of the step, which cost nothing extra;
* layer by layer (``decide="step"``, and the prefill of ``skip2``): the first window state
  ``h_{w-1}``, read out once over the full vocabulary.
"""

from __future__ import annotations

import torch

from ..anatomy import ModelAnatomy
from ..config import ReadoutName
from ..detection import DetectionConfig, LayerDetection, detect_layers
from ..divergence import adjacent_js_divergence, adjacent_top1_changes
from ..readout import Lens, get_lens, readout_logits


class WindowReadout:
    """Log-probabilities of last-position states over one step's candidate vocabulary.

    Args:
        anatomy: The model's anatomy.
        readout: ``"normed"`` (``lm_head(norm(h_j))``), ``"raw"`` (``lm_head(h_j)`` for ``j < L``) or a
            :class:`~lvlm_skip.readout.Lens`.
        candidates: ``k``; 0 reads the full vocabulary.
    """

    def __init__(self, anatomy: ModelAnatomy, *, readout: ReadoutName | Lens = "normed", candidates: int = 256):
        self.anatomy = anatomy
        self.readout = readout
        self.lens = get_lens(readout)
        self.candidates = min(candidates, anatomy.vocab_size) if candidates else 0
        self.token_ids: torch.Tensor | None = None  # (batch, k) candidate ids of the step
        self._head_rows: torch.Tensor | None = None  # (batch, k, hidden)
        self._head_bias: torch.Tensor | None = None  # (batch, k)

    @property
    def chosen(self) -> bool:
        """Whether the step's candidates are chosen (always true for the full vocabulary)."""
        return not self.candidates or self.token_ids is not None

    def choose_from_logits(self, logits: torch.Tensor) -> None:
        """Take the top-``k`` of `(batch, vocab)` full-vocabulary logits as the step's candidates."""
        if not self.candidates:
            return
        self.token_ids = logits.topk(self.candidates, dim=-1).indices  # shape: (batch, k)
        head = self.anatomy.lm_head
        self._head_rows = head.weight[self.token_ids]  # shape: (batch, k, hidden)
        self._head_bias = None if head.bias is None else head.bias[self.token_ids]

    def choose_from_state(self, state: torch.Tensor, layer: int) -> None:
        """Read `(batch, hidden)` layer ``layer``'s state out over the full vocabulary and keep its top-``k``."""
        if self.candidates:
            self.choose_from_logits(self._logits(state.to(self.anatomy.head_device)[None], [layer], full=True)[0])

    def logprobs(self, states: torch.Tensor, layers: list[int]) -> torch.Tensor:
        """`(n, batch, hidden)` un-normed states of ``layers`` -> `(n, batch, k or vocab)` float32 log-probabilities."""
        return torch.log_softmax(self._logits(states.to(self.anatomy.head_device), layers).float(), dim=-1)

    def _logits(self, states: torch.Tensor, layers: list[int], full: bool = False) -> torch.Tensor:
        anatomy = self.anatomy
        # 1. the lens: the norm on every state (normed readout), or only on layer L's (raw readout)
        x = self.lens.head_input(anatomy, states, layers)
        # 2. the head: all rows, or the step's candidate rows
        if full or not self.candidates:
            return readout_logits(anatomy, x, normed=False)
        logits = torch.einsum("nbd,bkd->nbk", x, self._head_rows.to(x.dtype))  # shape: (n, batch, k)
        return logits if self._head_bias is None else logits + self._head_bias.to(logits.dtype)


def window_curve(logp: torch.Tensor, first_layer: int, num_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `(batch, L)` curve of a window's readouts, NaN (and not changed) outside the window.

    Args:
        logp: `(n, batch, k)` log-probabilities of layers ``first_layer .. first_layer + n - 1``.
        first_layer: Layer of ``logp[0]`` (the window's seed, ``window_start - 1``).
        num_layers: ``L``.

    Returns:
        ``(jsd, top1_changed)``: `(batch, L)` float32 ``d_j`` for ``j = first_layer + 1 ..`` (NaN before),
        and `(batch, L)` bool top-1 changes.
    """
    batch = logp.shape[1]
    jsd = torch.full((batch, num_layers), float("nan"), device=logp.device)
    changed = torch.zeros(batch, num_layers, dtype=torch.bool, device=logp.device)
    if logp.shape[0] > 1:
        jsd[:, first_layer : first_layer + logp.shape[0] - 1] = adjacent_js_divergence(logp).T
        changed[:, first_layer : first_layer + logp.shape[0] - 1] = adjacent_top1_changes(logp).T
    return jsd, changed


def detect_window(
    readout: WindowReadout,
    states: torch.Tensor,
    first_layer: int,
    final_logits: torch.Tensor,
    detection: DetectionConfig,
    unobserved: torch.Tensor | None = None,
) -> tuple[torch.Tensor, LayerDetection]:
    """One step's detection from its window of states, read out over the final logits' top candidates.

    The one implementation behind online mode's batched path and :class:`~lvlm_skip.processors.MutationExitLogitsProcessor`,
    so that the two decide alike.

    Args:
        readout: The step's readout (its candidates are chosen here, from ``final_logits``).
        states: `(W + 1, batch, hidden)` un-normed states of layers ``first_layer .. L``.
        first_layer: Layer of ``states[0]`` (``window_start - 1``).
        final_logits: `(batch, vocab)` the model's logits of the step.
        detection: Thresholds.
        unobserved: Optional `(batch, L)` bool, layers not observed (skipped) at this step: NaN in the curve.

    Returns:
        ``(jsd, found)``: the `(batch, L)` curve (NaN outside the window) and the detection.
    """
    num_layers = readout.anatomy.num_layers
    readout.choose_from_logits(final_logits)
    logp = readout.logprobs(states, list(range(first_layer, num_layers + 1)))  # shape: (W + 1, batch, k)
    jsd, changed = window_curve(logp, first_layer, num_layers)
    if unobserved is not None:
        jsd = jsd.masked_fill(unobserved.to(jsd.device), float("nan"))
    return jsd, detect_layers(jsd, changed, detection)
