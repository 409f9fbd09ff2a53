"""Online mode: the step's critical and mutation layers, detected while the step runs, and what they drive.

Step ``t`` is the forward pass that predicts generated token ``t`` (step 0: the prefill, whose last
position predicts token 0; the other prompt positions are never skipped). At every step the states
``h_{w-1} .. h_L`` of the predicting position are read out (:mod:`~lvlm_skip.skips.window`), the
adjacent-layer JSD gives the step's curve, and the causal detector (:mod:`lvlm_skip.detection`)
gives its critical layer and mutation layers. How a variant acts on them
(its online strategy in :mod:`lvlm_skip.variants`; one step class each below):

* **exit**: every layer runs; after layer ``L`` the rows whose step shows a mutation at ``m`` take
  their distribution from ``h_{m-1}`` (one extra LM head for those rows only).
* **skip2** (discard): a layer whose JSD spikes (a mutation) has its update dropped: the next layer
  runs on its input. The decision at layer ``j`` depends on ``d_1..d_j`` only. It is executed
  *speculatively*: every layer runs, the step's curve is read out once after layer ``L``, and only
  when it shows a mutation at ``m`` are layers ``m+1..L`` run again, layer by layer, from ``h_{m-1}``
  (their K/V of this position are dropped from the cache first). The tokens equal those of a
  layer-by-layer decision; a step without mutation costs one readout, not one per layer. The prefill
  decides layer by layer.
* **skip1 / skip3** (span): once the critical layer is confirmed at layer ``k``, the layers
  ``k+1 .. m-1`` (skip1; ``m`` = the first mutation layer, given or measured at step 0, which runs in
  full) or ``k+1 .. L-keep_last`` (skip3) are skipped. With ``decide="lagged"`` (default) step ``t``
  skips after the ``k`` that step ``t-1`` confirmed, and reads its window out once after layer ``L``: a
  step whose observed layers confirm no critical layer (e.g. it stabilises later than the step before)
  runs the next step in full. With ``decide="step"`` each step confirms its own ``k`` layer by layer
  (one readout and one device-to-host copy per layer until every row has decided).

A layer skipped at a step gets its K/V from its input (:mod:`~lvlm_skip.skips.kv`), since it
may run again at a later step. Skipped layers are not observed: their ``d_j`` is NaN in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..anatomy import ModelAnatomy, drop_cache_positions_, unpack_layer_output
from ..detection import CausalLayerDetector
from ..divergence import js_divergence
from ..config import SkipConfig
from ..variants import Discard, Exit, OnlineStrategy, SkipVariant, Span
from .kv import DeferredKV, keep_input_at_last_position, write_skipped_kv
from .report import StepRecord
from .window import WindowReadout, detect_window, window_curve


@dataclass(frozen=True)
class OnlineContext:
    """What every online step of a wrapped model shares."""

    anatomy: ModelAnatomy
    config: SkipConfig
    variant: SkipVariant
    window_start: int

    @property
    def num_layers(self) -> int:
        return self.anatomy.num_layers


@dataclass
class OnlineSequence:
    """State carried from step to step within one sequence.

    Attributes:
        spans: Per row, the layers ``(first, last)`` that the next step skips (lagged span variants;
            ``first > last`` = none).
        resume: Per row, skip1's first mutation layer (given, or measured at step 0; 0 = none).
        deferred: The K/V of skipped positions not written yet (:class:`~lvlm_skip.skips.kv.DeferredKV`).
        measured: Per row, step 0's critical and mutation layers (for the report).
    """

    spans: list[tuple[int, int]]
    resume: list[int]
    deferred: DeferredKV
    measured: list[dict] = field(default_factory=list)


def _passed_over(hidden: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """The forward of a layer the decoder passed over: its output is its input."""
    return hidden


class OnlineStep:
    """One step: routes the layers and observes the window; a subclass per online strategy decides.

    The shared observation: the states ``h_{w-1} .. h_L`` of the predicting position, read out over the
    step's candidates, the adjacent-layer JSD and the causal detector, either layer by layer while the
    step runs (:attr:`per_layer`, when the strategy decides inside the step) or once after layer ``L``.
    Subclasses override :meth:`decides_per_layer`, :meth:`decide_at_layer` and :meth:`act`.
    """

    def __init__(self, ctx: OnlineContext, sequence: OnlineSequence, record: StepRecord):
        self.ctx = ctx
        self.sequence = sequence
        self.record = record
        batch = record.skipped.shape[0]
        config = ctx.config
        self.device = record.skipped.device
        self.window: dict[int, torch.Tensor] = {}  # layer -> (batch, hidden) state of the predicting position
        self.calls: dict[int, tuple] = {}  # layer -> (forward, args, kwargs) of this step (skip2 reruns)
        self.last_layer = 0  # the last layer the decoder called at this step
        self.readout = WindowReadout(ctx.anatomy, readout=config.readout, candidates=config.candidates)
        self.spans = list(sequence.spans) if config.decide == "lagged" else [(1, 0)] * batch
        self.skip_from_layer = min((first for first, last in self.spans if first <= last), default=ctx.num_layers + 1)
        self.per_layer = self.decides_per_layer()
        self.decided = [False] * batch  # rows whose span is decided (step mode)
        self.detector = CausalLayerDetector(batch, config.detection, device=self.device, num_layers=ctx.num_layers) if self.per_layer else None
        self.observed: dict[int, tuple[list[float], list[bool]]] = {}  # layer -> (d, mutation) per row, layer by layer
        self.prev_logp: torch.Tensor | None = None

    # -- the layer call --------------------------------------------------------------------------------

    def skip_rows(self, layer: int) -> list[bool]:
        """Host list: which rows skip ``layer`` at this step."""
        return [first <= layer <= last for first, last in self.spans]

    def run_layer(self, layer: int, forward, hidden: torch.Tensor, args, kwargs) -> torch.Tensor:
        """Run (or skip) 1-based ``layer`` on `(batch, seq, hidden)` ``hidden`` for this step.

        Layers the decoder passed over since the last call (Mllama's cross-attention layers on a prompt without an
        image) are the identity: they are observed, and skipped where the span says, like any other.
        """
        for passed in range(self.last_layer + 1, layer):
            self.last_layer = passed
            hidden = self._run_layer(passed, _passed_over, hidden, args, kwargs)
        self.last_layer = layer
        return self._run_layer(layer, forward, hidden, args, kwargs)

    def _run_layer(self, layer: int, forward, hidden: torch.Tensor, args, kwargs) -> torch.Tensor:
        ctx, record = self.ctx, self.record
        if layer == ctx.window_start:
            self._observe(layer - 1, hidden[:, -1])
        rows = self.skip_rows(layer) if layer >= self.skip_from_layer else None
        skip = rows is not None and any(rows)
        if skip:
            record.skipped[:, layer - 1] = torch.tensor(rows, device=self.device)
        if skip and all(rows) and not record.prefill:
            if (ctx.config.kv_fill == "project" and layer not in ctx.anatomy.mask_size_layers
                    and layer not in ctx.anatomy.cross_attention_layers):
                self.sequence.deferred.defer(layer, hidden, kwargs)
            else:
                write_skipped_kv(ctx.anatomy, ctx.config.kv_fill, layer, forward, hidden, args, kwargs)
            out = hidden
        else:
            self.sequence.deferred.flush(layer)  # K/V of earlier skipped positions, before the layer reads them
            record.layers_run += 1
            self.calls[layer] = (forward, args, kwargs)
            out = unpack_layer_output(forward(hidden, *args, **kwargs))
            if skip:
                out = keep_input_at_last_position(out, hidden, torch.tensor(rows))
        if layer >= ctx.window_start:
            out = self._observe(layer, out[:, -1], out=out, hidden=hidden)
        return out

    def _observe(self, layer: int, state: torch.Tensor, out=None, hidden=None):
        """Keep the window state; on the layer-by-layer path, read it out and decide."""
        self.window[layer] = state
        if not self.per_layer or self.done_deciding():
            return out
        if self.prev_logp is None:  # the window's seed h_{w-1}: candidates and first readout
            self.readout.choose_from_state(state, layer)
            self.prev_logp = self.readout.logprobs(state[None], [layer])[0]
            return out
        # 1. the readout, its JSD to the previous layer's, one device-to-host copy, the detector on the host
        logp = self.readout.logprobs(state[None], [layer])[0]
        values = js_divergence(self.prev_logp, logp).tolist()  # (batch,) d_layer
        changed = (logp.argmax(-1) != self.prev_logp.argmax(-1)).tolist() if self.ctx.config.detection.needs_top1 else None
        if layer >= self.skip_from_layer:  # rows that skipped this layer did not observe it
            values = [float("nan") if skipped else v for v, skipped in zip(values, self.skip_rows(layer))]
        mutation = self.detector.observe_values(layer, values, changed)
        self.observed[layer] = (values, mutation)
        # 2. the decision
        return self.decide_at_layer(layer, logp, mutation, out, hidden)

    # -- what a strategy overrides ---------------------------------------------------------------------

    def decides_per_layer(self) -> bool:
        """Whether this step reads its window out layer by layer and decides inside the step."""
        return False

    def done_deciding(self) -> bool:
        """Layer by layer: whether every row has decided (the rest of the window need not be read out)."""
        return False

    def decide_at_layer(self, layer: int, logp: torch.Tensor, mutation: list[bool], out, hidden):
        """Layer by layer: act on layer ``layer``'s readout `(batch, candidates)` ``logp`` and the
        detector's per-row ``mutation``; returns the layer's (possibly changed) output."""
        self.prev_logp = logp
        return out

    def act(self, logits: torch.Tensor, found, states: torch.Tensor, jsd: torch.Tensor) -> torch.Tensor:
        """After layer ``L``, on the step's detection ``found``: returns the logits the model returns."""
        return logits

    def _record_observed(self) -> None:
        """The layer-by-layer path's observations into the step's record, in one copy each."""
        if not self.observed:
            return
        layers = sorted(self.observed)
        index = torch.tensor([j - 1 for j in layers], device=self.device)
        self.record.jsd[:, index] = torch.tensor([self.observed[j][0] for j in layers], device=self.device).T
        self.record.mutation[:, index] = torch.tensor([self.observed[j][1] for j in layers], device=self.device).T
        self.record.critical = self.detector.critical.to(self.device)

    # -- after layer L -------------------------------------------------------------------------------

    def finish(self, logits: torch.Tensor) -> torch.Tensor:
        """At the LM head: the step's batched readout and detection, and the decisions that follow.

        Args:
            logits: `(batch, positions, vocab)` the head's output; the last position predicts the token.

        Returns:
            The logits the model returns (new rows for exit / skip2, else the same tensor).
        """
        if self.per_layer:
            self._record_observed()
            return logits
        if len(self.window) < 2:
            return logits
        ctx, record = self.ctx, self.record
        first = ctx.window_start - 1
        # 1. one readout of the whole window over the step's candidates (the model's own top-k)
        states = torch.stack([self.window[j] for j in range(first, ctx.num_layers + 1)])  # shape: (W + 1, batch, hidden)
        jsd, found = detect_window(self.readout, states, first, logits[:, -1], ctx.config.detection,
                                   unobserved=record.skipped)  # a skipped layer is not observed
        record.jsd, record.critical, record.mutation = jsd, found.critical.to(self.device), found.mutation.to(self.device)
        # 2. what the variant does with it
        return self.act(logits, found, states, jsd)


class SpanStep(OnlineStep):
    """:class:`~lvlm_skip.variants.Span`: once the critical layer is confirmed at ``k``, skip the variant's span."""

    def decides_per_layer(self) -> bool:
        # a step that measures skip1's resume layer m (step 0 without given mutation layers) runs in full
        measures_resume = self._resume_measured() and self.record.prefill
        return self.ctx.config.decide == "step" and not measures_resume

    def done_deciding(self) -> bool:
        return all(self.decided)

    def decide_at_layer(self, layer, logp, mutation, out, hidden):
        """Step mode: rows that confirmed their critical layer at ``layer`` skip their span from ``layer + 1``."""
        ctx = self.ctx
        for b, row in enumerate(self.detector.rows):
            if row.critical and not self.decided[b]:
                self.spans[b] = ctx.variant.span(ctx.config, ctx.num_layers, layer, self._resume(b))
                self.decided[b] = True
                self.skip_from_layer = min(self.skip_from_layer, layer + 1)
        self.prev_logp = logp
        return out

    def act(self, logits, found, states, jsd):
        self._plan_next_step(found)
        return logits

    def _resume_measured(self) -> bool:
        """Whether the span ends at a mutation layer that has to be measured (skip1 without given mutation layers)."""
        return "mutation" in self.ctx.variant.needs and not self.ctx.config.mutation_layers

    def _resume(self, row: int) -> int:
        given = self.ctx.config.mutation_layers
        return given[0] if given else self.sequence.resume[row]

    def _plan_next_step(self, found) -> None:
        """Lagged spans: the next step skips after the layer where this step confirmed its critical layer."""
        ctx, sequence = self.ctx, self.sequence
        if self.record.prefill and self._resume_measured():
            sequence.resume = found.first_mutation().tolist()
            sequence.measured = [
                {"critical": int(found.critical[b]), "mutation": found.mutation_layers(b)} for b in range(len(sequence.resume))
            ]
        confirmed_at = found.confirmed_at.tolist()
        sequence.spans = [
            ctx.variant.span(ctx.config, ctx.num_layers, k, self._resume(b)) if k else (1, 0) for b, k in enumerate(confirmed_at)
        ]


class ExitStep(OnlineStep):
    """:class:`~lvlm_skip.variants.Exit`: every layer runs; mutation rows take the distribution of ``h_{m-1}``."""

    def act(self, logits, found, states, jsd):
        return self._exit(logits, found.first_mutation())

    def _exit(self, logits: torch.Tensor, first_mutation: torch.Tensor) -> torch.Tensor:
        """Rows with a mutation at ``m`` take their distribution from ``h_{m-1}``."""
        exit_layers = [m - 1 if m else self.ctx.num_layers for m in first_mutation.tolist()]
        rows = [b for b, e in enumerate(exit_layers) if e < self.ctx.num_layers]
        self.record.exit_layer = torch.tensor(exit_layers, device=self.device)
        if not rows:
            return logits
        anatomy = self.ctx.anatomy
        states = torch.stack([self.window[exit_layers[b]][b] for b in rows])  # shape: (rows, hidden)
        new = anatomy.unembed(anatomy.final_norm(states.to(anatomy.head_device)))  # shape: (rows, vocab)
        logits = logits.clone()
        logits[rows, -1] = new.to(logits.dtype)
        return logits



class DiscardStep(OnlineStep):
    """:class:`~lvlm_skip.variants.Discard`: a layer whose update spikes is dropped (speculatively after step 0)."""

    def decides_per_layer(self) -> bool:
        return self.record.prefill  # the prefill decides layer by layer

    def decide_at_layer(self, layer, logp, mutation, out, hidden):
        if any(mutation):  # the mutation rows' update is dropped, their readout goes back to the input's
            rows = torch.tensor(mutation, device=logp.device)
            out = keep_input_at_last_position(out, hidden, rows)
            self.record.skipped[:, layer - 1] |= rows.to(self.device)
            self.window[layer] = out[:, -1]
            self.prev_logp = torch.where(rows[:, None], self.prev_logp, logp)
        else:
            self.prev_logp = logp
        return out

    def act(self, logits, found, states, jsd):
        return self._rerun_after_mutation(logits, found.first_mutation(), states, jsd)

    def _rerun_after_mutation(self, logits, first_mutation, states, jsd) -> torch.Tensor:
        """skip2, speculatively: if a row's curve spikes at ``m``, rerun layers ``m+1..L`` dropping the spikes."""
        firsts = first_mutation.tolist()
        mutated = [m for m in firsts if m]
        if not mutated:
            return logits
        ctx, record = self.ctx, self.record
        L, first = ctx.num_layers, ctx.window_start - 1
        m_min = min(mutated)
        # 1. the detector and the stream as the layer-by-layer decision leaves them after layer m_min
        logp = self.readout.logprobs(states[: m_min - first + 1], list(range(first, m_min + 1)))
        changed = window_curve(logp, first, L)[1]
        detector = CausalLayerDetector(len(firsts), ctx.config.detection, device=self.device, num_layers=L)
        for j in range(ctx.window_start, m_min + 1):
            detector.observe(j, jsd[:, j - 1], changed[:, j - 1])
        dropped = torch.tensor([m == m_min for m in firsts], device=self.device)
        record.mutation[:, m_min:] = False
        record.jsd[:, m_min:] = float("nan")
        record.skipped[:, m_min - 1] |= dropped
        state = torch.where(dropped[:, None], self.window[m_min - 1], self.window[m_min])  # shape: (batch, hidden)
        prev_logp = torch.where(dropped[:, None], logp[m_min - 1 - first], logp[m_min - first])
        # 2. this step's K/V of layers m_min+1..L are recomputed, so the speculative ones go
        drop_cache_positions_(ctx.anatomy, ctx.anatomy.layer_cache(self.calls[L][2]), range(m_min + 1, L + 1), count=1)
        # 3. layers m_min+1..L again, layer by layer, dropping the updates that spike
        for j in range(m_min + 1, L + 1):
            forward, args, kwargs = self.calls[j]
            out = unpack_layer_output(forward(state[:, None], *args, **kwargs))[:, -1].to(state.device)
            step_logp = self.readout.logprobs(out[None], [j])[0]
            d = js_divergence(prev_logp, step_logp)
            mutation = detector.observe(j, d, step_logp.argmax(-1) != prev_logp.argmax(-1))
            record.jsd[:, j - 1], record.mutation[:, j - 1] = d, mutation
            record.skipped[:, j - 1] |= mutation
            record.layers_run += 1
            state = torch.where(mutation[:, None], state, out)
            prev_logp = torch.where(mutation[:, None], prev_logp, step_logp)
        record.critical = detector.critical.to(self.device)
        # 4. the head on the new last states (rows without a mutation get theirs back unchanged)
        anatomy = ctx.anatomy
        new = anatomy.unembed(anatomy.final_norm(state.to(anatomy.head_device)))  # shape: (batch, vocab)
        changed_rows = torch.tensor([bool(m) for m in firsts], device=logits.device)
        last = torch.where(changed_rows[:, None], new.to(logits.dtype), logits[:, -1])
        return torch.cat([logits[:, :-1], last[:, None]], dim=1)


#: The step class of each online strategy.
STEPS: dict[type[OnlineStrategy], type[OnlineStep]] = {Span: SpanStep, Discard: DiscardStep, Exit: ExitStep}


def online_step(ctx: OnlineContext, sequence: OnlineSequence, record: StepRecord) -> OnlineStep:
    """The step of ``ctx.variant``'s online strategy."""
    return STEPS[ctx.variant.online](ctx, sequence, record)
