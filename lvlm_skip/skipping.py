"""The paper's layer interventions (skip.1 / skip.2 / skip.3 / layer exit), decided per decoding step.

**One semantic for every variant.** Skipping layer ``j`` at a position makes it the identity on the
residual stream there (its output is its input). Its attention cache at that position holds the
K/V projections of that input, i.e. of the hidden state that entered the skipped span (CALM's
propagation policy). Later positions attend to those K/V whenever the layer runs again. With
``kv_fill="project"`` only the K/V projections are computed (:func:`~lvlm_skip.anatomy.project_kv_into_cache_`);
``kv_fill="recompute"`` runs the whole layer and discards its output: same result, no saving.
A layer skipped at every step for every row (static sets) never runs at all: no K/V are needed,
because nobody ever reads them. That is the model with those layers deleted, and decoding is
faster by the fraction of layers removed. The exception is layer 1, whose cache transformers
reads the sequence length from: its K/V are always projected.

**Variants** (``c`` critical layer, ``m`` first mutation layer, ``M`` mutation layers, ``L`` layers):

* ``none``: the stock model (no hooks are installed at all).
* ``skip1``: skip the stabilization stage, layers ``c+1 .. m-1``.
* ``skip2``: skip the mutation layers ``M``.
* ``skip3``: skip ``c+1 .. L-keep_last`` (the last ``keep_last`` = 5 layers run).
* ``exit``: take the next-token distribution from layer ``e`` (given, or the last layer before the
  first mutation ``e = m - 1``) instead of layer ``L``.
* ``layers``: skip an explicit list of layers.

**Modes.**

* ``static``: one skip set per row for the whole generation: given (``layers=``, or
  ``critical_layer=`` / ``mutation_layers=`` / ``exit_layer=``) or *calibrated once per prompt*: at
  the prefill, before anything is written to the cache, the decoder runs once more over the prompt
  with every layer (no cache), the full-vocabulary readout of the last prompt position gives the
  JSD curve, and :func:`~lvlm_skip.detection.detect_layers` gives ``c``, ``M``. The prefill reuses
  that pass's outputs below the first skipped layer (projecting only their K/V into the cache), so
  calibration costs the deeper layers' pass over the prompt once more (not the vision tower). The set applies to every position,
  the prompt included, so a static skip decodes exactly like the model with those layers deleted.
  A static ``exit`` at ``e`` skips layers ``e+1..L``; since layers up to ``e`` never depend on deeper
  ones, this equals "all layers run, the distribution comes from layer ``e``".
* ``online``: at every decoding step (the prefill's last position is step 0) the critical and
  mutation layers of that step are detected causally while the forward pass runs, from the
  adjacent-layer JSD of the readouts of the layers run so far (``DetectionConfig``; definitions in
  :mod:`lvlm_skip.detection`), and the decision applies at that step:
  ``skip1`` skips from the layer that confirms ``c`` (``c + patience - 1`` when no layer is missing) to ``m - 1``, where ``m``
  is given or calibrated at the prefill (layers that are skipped cannot show a spike); ``skip3``
  skips from the confirmation to ``L - keep_last``; ``skip2`` runs each layer after ``c``, and when
  its JSD spikes (a mutation) discards its update (the K/V it wrote came from its input: the
  skip semantic); ``exit`` runs every layer and emits the distribution of the layer before the
  first mutation of that step. Prompt positions other than the last are never skipped.

**Online cost per step**: the readout of every layer in the window ``[window_start, L]`` (default
``L // 4``) until the decision no longer needs it. Exact mode (``candidates=0``) is a full-vocabulary
LM head per layer (for LLaVA-7B ~0.65 of a decoder layer's FLOPs each). The default
(``candidates=k``) reads the full vocabulary once per step at ``window_start``, keeps its top-``k``
tokens as the step's shared candidate vocabulary, and reads the other window layers over those
``k`` rows only (``k * hidden`` MACs each), with the JSD taken between the distributions
renormalised on the candidates. Each observed layer costs one device-to-host copy of ``batch``
floats, because the decision is a Python branch.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from .anatomy import ModelAnatomy, project_kv_into_cache_, unpack_layer_output
from .detection import CausalLayerDetector, DetectionConfig, detect_layers
from .divergence import adjacent_js_divergence, adjacent_top1_changes
from .readout import readout_logits, stack_layer_logprobs

logger = logging.getLogger(__name__)

VARIANTS = ("none", "skip1", "skip2", "skip3", "exit", "layers")
MODES = ("static", "online")
KV_FILLS = ("project", "recompute")


@dataclass(frozen=True)
class SkipConfig:
    """What to skip and when. Layer numbers are 1-based (see :mod:`lvlm_skip.anatomy`)."""

    variant: str = "none"
    """One of none, skip1, skip2, skip3, exit, layers."""
    mode: str = "static"
    """static (one set per prompt) or online (decided at every step)."""
    layers: tuple[int, ...] | None = None
    """Explicit layers to skip (variant "layers")."""
    critical_layer: int | None = None
    """Given critical layer (skip1/skip3); calibrated at the prefill when None."""
    mutation_layers: tuple[int, ...] | None = None
    """Given mutation layers (skip1 uses the first, skip2 all); calibrated when None."""
    exit_layer: int | None = None
    """Given exit layer (static exit); calibrated as first mutation - 1 when None."""
    keep_last: int = 5
    """skip3 keeps this many final layers."""
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    """Critical / mutation thresholds."""
    candidates: int = 256
    """Online readout: size of the per-step candidate vocabulary; 0 reads the full vocabulary."""
    window_start: int | None = None
    """Online readout: first layer read out each step (default L // 4)."""
    kv_fill: str = "project"
    """How a skipped layer's cache is filled when it may run later: project or recompute."""

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.kv_fill not in KV_FILLS:
            raise ValueError(f"`kv_fill` (={self.kv_fill!r}) has to be one of {KV_FILLS}")
        if self.variant == "layers" and not self.layers:
            raise ValueError("variant 'layers' needs `layers`, the list of layers to skip")
        if self.layers is not None and self.variant != "layers":
            raise ValueError(f"`layers` is only for variant 'layers' (got variant {self.variant!r})")
        if not isinstance(self.keep_last, int) or self.keep_last < 1:
            raise ValueError(f"`keep_last` (={self.keep_last}) has to be a positive int")
        if not isinstance(self.candidates, int) or self.candidates < 0:
            raise ValueError(f"`candidates` (={self.candidates}) has to be an int >= 0")
        if isinstance(self.detection, dict):
            object.__setattr__(self, "detection", DetectionConfig.from_dict(self.detection))
        for name in ("layers", "mutation_layers"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(sorted({int(v) for v in value})))

    @classmethod
    def from_kwargs(cls, **kwargs) -> "SkipConfig":
        """Build from keyword arguments, rejecting unknown ones with the list of known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**kwargs)

    def validate_for(self, anatomy: ModelAnatomy) -> None:
        """Check layer numbers against the model; raise ``ValueError`` with the valid range."""
        num_layers = anatomy.num_layers
        for layer in (self.layers or ()) + (self.mutation_layers or ()):
            anatomy.check_layer(layer)
        for name in ("critical_layer", "exit_layer", "window_start"):
            value = getattr(self, name)
            if value is not None:
                anatomy.check_layer(value)
        if self.layers is not None and len(self.layers) >= num_layers:
            raise ValueError(f"skipping layers {list(self.layers)} would skip every one of the {num_layers} layers")
        if self.variant == "skip3" and self.keep_last >= num_layers:
            raise ValueError(f"`keep_last` (={self.keep_last}) has to be smaller than the {num_layers} layers")
        if self.variant == "exit" and self.mode == "static" and self.exit_layer == num_layers:
            logger.info("exit at the last layer %d is the stock model", num_layers)

    @property
    def needs_calibration(self) -> bool:
        """Whether the prefill must measure the prompt's critical / mutation layers first."""
        if self.variant in ("none", "layers"):
            return False
        if self.mode == "online":
            return self.variant == "skip1" and not self.mutation_layers
        given = {
            "skip1": self.critical_layer is not None and bool(self.mutation_layers),
            "skip2": bool(self.mutation_layers),
            "skip3": self.critical_layer is not None,
            "exit": self.exit_layer is not None or bool(self.mutation_layers),
        }
        return not given[self.variant]

    def to_dict(self) -> dict:
        return asdict(self)


def static_skip_set(config: SkipConfig, num_layers: int, critical: int, mutation: list[int]) -> list[int]:
    """The 1-based layers a static variant skips, given a row's critical and mutation layers.

    Args:
        config: The variant; its given layers take precedence over ``critical`` / ``mutation``.
        num_layers: ``L``.
        critical: Critical layer (0 = none detected).
        mutation: Mutation layers (possibly empty).

    Returns:
        Sorted layer numbers; empty when the variant cannot apply (e.g. no critical layer).
    """
    c = config.critical_layer if config.critical_layer is not None else critical
    mutations = list(config.mutation_layers) if config.mutation_layers else list(mutation)
    if config.variant == "layers":
        return list(config.layers)
    if config.variant == "skip1":
        m = mutations[0] if mutations else 0
        return list(range(c + 1, m)) if c and m else []
    if config.variant == "skip2":
        return mutations
    if config.variant == "skip3":
        return list(range(c + 1, num_layers - config.keep_last + 1)) if c else []
    if config.variant == "exit":
        e = config.exit_layer if config.exit_layer is not None else (mutations[0] - 1 if mutations else num_layers)
        return list(range(e + 1, num_layers + 1))
    return []


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
        jsd: `(steps, batch, L)` online mode: the JSD observed after each layer (NaN where not
            observed: outside the window, or skipped); static mode: all NaN (see ``calibration``).
        layers_run: `(steps,)` number of layers that ran for at least one row.
        calibration: Per row, the critical and mutation layers measured at the prefill (static /
            skip1-online), else empty.
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

    @property
    def num_steps(self) -> int:
        return int(self.skipped.shape[0])

    def skipped_layers(self, step: int, row: int = 0) -> list[int]:
        """1-based layers skipped for ``row`` at ``step``."""
        return (np.flatnonzero(self.skipped[step, row]) + 1).tolist()

    def mean_layers_skipped(self) -> float:
        """Average number of skipped layers per step and row."""
        return float(self.skipped.sum(-1).mean()) if self.skipped.size else 0.0

    def to_dict(self) -> dict:
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
        }


class SkipController:
    """Runs every decoder layer of a wrapped model and applies a :class:`SkipConfig`.

    The model's layer ``forward`` methods are routed to :meth:`run_layer` by :mod:`lvlm_skip.hooks`.
    A new sequence starts at every forward whose query length is > 1 (a prefill).
    """

    def __init__(self, anatomy: ModelAnatomy, config: SkipConfig):
        config.validate_for(anatomy)
        self.anatomy = anatomy
        self.config = config
        self.num_layers = anatomy.num_layers
        self.window_start = config.window_start or max(1, self.num_layers // 4)
        self._records: list[dict] = []
        self.calibration: list[dict] = []
        self._static_skip: np.ndarray | None = None  # (batch, L) bool
        self._calibration_outputs: list[torch.Tensor] = []  # static: reusable prefill layer outputs
        self._resume_layer: np.ndarray | None = None  # (batch,) skip1-online first mutation layer
        if config.mode == "static" and not config.needs_calibration and config.variant != "none":
            # one set for every row
            row = np.zeros(self.num_layers, dtype=bool)
            row[np.asarray(static_skip_set(config, self.num_layers, 0, []), dtype=int) - 1] = True
            self._given_skip = row
        else:
            self._given_skip = None

    # -- sequence / step bookkeeping -------------------------------------------------------------

    def reset(self) -> None:
        """Forget the previous sequence (called by the wrapped ``generate`` and at every prefill)."""
        self._records = []
        self.calibration = []
        self._static_skip = None
        self._resume_layer = None
        self._calibration_outputs = []

    def report(self) -> SkipReport:
        """The :class:`SkipReport` of the current / last sequence."""
        steps = self._records
        batch = steps[0]["skipped"].shape[0] if steps else 0
        L = self.num_layers

        def stack(key, shape, dtype):
            return np.stack([s[key] for s in steps]) if steps else np.zeros(shape, dtype=dtype)

        return SkipReport(
            config=self.config,
            num_layers=L,
            skipped=stack("skipped", (0, batch, L), bool),
            critical=stack("critical", (0, batch), np.int64),
            mutation=stack("mutation", (0, batch, L), bool),
            exit_layer=stack("exit_layer", (0, batch), np.int64),
            jsd=stack("jsd", (0, batch, L), np.float32),
            layers_run=np.asarray([s["layers_run"] for s in steps], dtype=np.int64),
            calibration=list(self.calibration),
        )

    def _begin_step(self, hidden: torch.Tensor, layer_kwargs: dict, layer_forwards) -> None:
        batch, seq = hidden.shape[:2]
        prefill = seq > 1 or not self._records
        if prefill:
            self.reset()
            if self.config.needs_calibration:
                self._calibrate(hidden, layer_kwargs, layer_forwards)
        L = self.num_layers
        step = {
            "prefill": prefill,
            "skipped": np.zeros((batch, L), dtype=bool),
            "critical": np.zeros(batch, dtype=np.int64),
            "mutation": np.zeros((batch, L), dtype=bool),
            "exit_layer": np.full(batch, L, dtype=np.int64),
            "jsd": np.full((batch, L), np.nan, dtype=np.float32),
            "layers_run": 0,
        }
        if self.config.mode == "static":
            if self._given_skip is not None:
                step["skipped"] = np.broadcast_to(self._given_skip, (batch, L)).copy()
            else:
                step["skipped"] = self._static_skip.copy()
            if self.calibration:
                step["critical"] = np.asarray([c["critical"] for c in self.calibration], dtype=np.int64)
            if self.config.variant == "exit":
                skipped = step["skipped"]
                step["exit_layer"] = np.where(skipped.any(-1), skipped.argmax(-1), L)
        else:
            self._online = _OnlineStep(self, batch)
        self._step = step
        self._records.append(step)

    # -- calibration -----------------------------------------------------------------------------

    @torch.no_grad()
    def _calibrate(self, hidden: torch.Tensor, layer_kwargs: dict, layer_forwards) -> None:
        """Run every layer once over the prompt without cache; detect on the last position's curve.

        In static mode the outputs of every layer (all prompt positions) are kept until the prefill
        has passed the first layer that any row skips: below it the prefill computes exactly what
        calibration did, so it reuses those outputs and only projects their K/V into the cache.
        """
        kwargs = dict(layer_kwargs, past_key_values=None, use_cache=False)
        device = self.anatomy.head_device
        keep_outputs = self.config.mode == "static" and self.config.kv_fill == "project"
        outputs = []
        states = [hidden[:, -1].to(device)]
        h = hidden
        for forward in layer_forwards:
            h = unpack_layer_output(forward(h, **kwargs))
            states.append(h[:, -1].to(device))
            if keep_outputs:
                outputs.append(h)
        stacked = torch.stack(states)  # shape: (L + 1, batch, hidden)
        logp = stack_layer_logprobs(self.anatomy, stacked)  # shape: (L + 1, batch, vocab)
        jsd = adjacent_js_divergence(logp).T  # shape: (batch, L)
        found = detect_layers(jsd, adjacent_top1_changes(logp).T, self.config.detection)
        L = self.num_layers
        self.calibration = [
            {"critical": int(found.critical[b]), "mutation": found.mutation_layers(b), "jsd": jsd[b].tolist()}
            for b in range(hidden.shape[0])
        ]
        if self.config.mode == "static":
            skip = np.zeros((hidden.shape[0], L), dtype=bool)
            for b, cal in enumerate(self.calibration):
                layers = static_skip_set(self.config, L, cal["critical"], cal["mutation"])
                skip[b, np.asarray(layers, dtype=int) - 1] = True
                if skip[b].all():
                    skip[b, 0] = False
            self._static_skip = skip
            if keep_outputs:
                # layers 1 .. first skipped - 1 (over all rows) are identical in calibration and prefill
                skipped_any = skip.any(0)
                reusable = int(skipped_any.argmax()) if skipped_any.any() else L
                self._calibration_outputs = outputs[:reusable]
        else:
            self._resume_layer = np.asarray(
                [cal["mutation"][0] if cal["mutation"] else 0 for cal in self.calibration], dtype=np.int64
            )

    # -- the layer call --------------------------------------------------------------------------

    def run_layer(self, layer: int, forward, layer_forwards, hidden: torch.Tensor, args, kwargs) -> torch.Tensor:
        """Run (or skip) 1-based ``layer`` on ``hidden`` `(batch, seq, hidden)` for the current step."""
        if layer == 1:
            self._begin_step(hidden, kwargs, layer_forwards)
        if self.config.mode == "online":
            return self._online.run_layer(layer, forward, hidden, args, kwargs)
        step = self._step
        if step["prefill"] and layer <= len(self._calibration_outputs):
            # the calibration pass already computed this layer's output over the prompt
            step["layers_run"] += 1
            self.fill_kv(layer, forward, hidden, args, kwargs)
            out = self._calibration_outputs[layer - 1]
            if layer == len(self._calibration_outputs):
                self._calibration_outputs = []
            return out
        skip_rows = step["skipped"][:, layer - 1]
        if skip_rows.all():
            if layer == self.anatomy.cache_length_layer:
                self.fill_kv(layer, forward, hidden, args, kwargs)
            return hidden
        step["layers_run"] += 1
        out = unpack_layer_output(forward(hidden, *args, **kwargs))
        if skip_rows.any():
            keep_input = torch.from_numpy(skip_rows).to(out.device)[:, None, None]
            out = torch.where(keep_input, hidden, out)
        return out

    def fill_kv(self, layer: int, forward, hidden: torch.Tensor, args, kwargs) -> None:
        """Write the skipped ``layer``'s K/V for ``hidden`` into the cache (the module docstring's policy)."""
        cache = kwargs.get("past_key_values")
        if cache is None:
            return
        if self.config.kv_fill == "project":
            module = self.anatomy.layers[layer - 1]
            project_kv_into_cache_(module, hidden, kwargs["position_embeddings"], cache)
        else:
            forward(hidden, *args, **kwargs)


class _OnlineStep:
    """Per-step state of online mode: the stream's readout, the causal detector, the decisions.

    Two ways to observe the layers, with the same results:

    * per layer (skip1, skip2, skip3): each layer's readout is needed before the next layer runs,
      because the decision changes what runs next. skip1 / skip3 stop observing once they have
      decided; skip2 observes every window layer.
    * once per step (exit): every layer runs anyway and the decision only picks which state feeds
      the LM head, so the window's states are read out together after layer ``L``: one stacked
      norm, head, softmax and JSD, and one device-to-host copy per step.
    """

    def __init__(self, controller: SkipController, batch: int):
        self.c = controller
        self.config = controller.config
        self.detector = CausalLayerDetector(batch, self.config.detection, num_layers=controller.num_layers)
        self.prev_logp: torch.Tensor | None = None
        self.head_rows: torch.Tensor | None = None
        self.skip_from = np.zeros(batch, dtype=np.int64)  # rows skip layers skip_from..skip_to
        self.skip_to = np.zeros(batch, dtype=np.int64)
        self.decided = np.zeros(batch, dtype=bool)
        self.batched = self.config.variant == "exit"
        self.window_states: list[torch.Tensor] = []

    def _readout(self, states: torch.Tensor) -> torch.Tensor:
        """Log-probabilities `(n, batch, k or vocab)` of un-normed last-position states `(n, batch, hidden)`.

        The first call of a step (the window's first state) also chooses the step's candidate
        vocabulary: the top-``candidates`` tokens of that state's full-vocabulary readout.
        """
        anatomy = self.c.anatomy
        states = states.to(anatomy.head_device)
        k = self.config.candidates
        if not k:
            logits = readout_logits(anatomy, states)
        else:
            if self.head_rows is None:
                full = readout_logits(anatomy, states[0])  # shape: (batch, vocab)
                rows = full.topk(min(k, full.shape[-1]), dim=-1).indices  # shape: (batch, k)
                self.head_rows = anatomy.lm_head.weight[rows]  # shape: (batch, k, hidden)
            normed = anatomy.final_norm(states)
            logits = torch.einsum("nbd,bkd->nbk", normed, self.head_rows.to(normed.dtype))
        return torch.log_softmax(logits.float(), dim=-1)

    def _feed(self, first_layer: int, logp: torch.Tensor) -> np.ndarray:
        """Detect on readouts of layers ``first_layer, first_layer + 1, ...``; return `(n, batch)` mutation flags.

        The first readout of a step (layer ``window_start - 1``) only seeds the comparison.
        """
        step = self.c._step
        if self.prev_logp is not None:
            logp = torch.cat([self.prev_logp[None], logp])
            first_layer -= 1
        self.prev_logp = logp[-1]
        n = logp.shape[0] - 1
        mutation = np.zeros((n, logp.shape[1]), dtype=bool)
        if n == 0:
            return mutation
        jsd = adjacent_js_divergence(logp)  # shape: (n, batch)
        changed = adjacent_top1_changes(logp)
        both = torch.stack([jsd, changed.float()]).cpu().numpy()  # one device-to-host copy
        for i in range(n):
            layer = first_layer + 1 + i
            step["jsd"][:, layer - 1] = both[0, i]
            observed = self.detector.observe(layer, torch.from_numpy(both[0, i]), torch.from_numpy(both[1, i] > 0))
            mutation[i] = observed.numpy()
        return mutation

    def run_layer(self, layer: int, forward, hidden: torch.Tensor, args, kwargs) -> torch.Tensor:
        c, step = self.c, self.c._step
        window_start, L = c.window_start, c.num_layers
        if layer == window_start:
            if self.batched:
                self.window_states.append(hidden[:, -1].to(c.anatomy.head_device))
            else:
                self._feed(layer - 1, self._readout(hidden[:, -1][None]))
        skip_rows = (self.skip_from <= layer) & (layer <= self.skip_to)
        prefill = hidden.shape[1] > 1
        if skip_rows.all() and not prefill:
            step["skipped"][:, layer - 1] = True
            c.fill_kv(layer, forward, hidden, args, kwargs)
            return hidden
        step["layers_run"] += 1
        out = unpack_layer_output(forward(hidden, *args, **kwargs))
        if skip_rows.any():
            out = _keep_input_at_last_position(out, hidden, skip_rows)
            step["skipped"][:, layer - 1] |= skip_rows
        if layer < window_start:
            return out
        if self.batched:
            self.window_states.append(out[:, -1].to(c.anatomy.head_device))
            if layer == L:
                out = self._exit(out)
        elif not self.decided.all():
            mutation = self._feed(layer, self._readout(out[:, -1][None]))[0] & ~skip_rows
            step["mutation"][:, layer - 1] = mutation
            out = self._decide(layer, out, hidden, mutation)
        if layer == L:
            step["critical"] = self.detector.critical.numpy().copy()  # the detector updates it in place
        return out

    def _decide(self, layer: int, out: torch.Tensor, hidden: torch.Tensor, mutation: np.ndarray) -> torch.Tensor:
        c, cfg, step = self.c, self.config, self.c._step
        L = c.num_layers
        confirmed_now = self.detector.confirmed.numpy() & ~self.decided
        if cfg.variant == "skip1":
            resume = np.full(len(mutation), cfg.mutation_layers[0]) if cfg.mutation_layers else c._resume_layer
            rows = confirmed_now & (resume > layer + 1)
            self.skip_from = np.where(rows, layer + 1, self.skip_from)
            self.skip_to = np.where(rows, resume - 1, self.skip_to)
            self.decided |= confirmed_now
        elif cfg.variant == "skip3":
            last_skipped = L - cfg.keep_last
            rows = confirmed_now & (last_skipped > layer)
            self.skip_from = np.where(rows, layer + 1, self.skip_from)
            self.skip_to = np.where(rows, last_skipped, self.skip_to)
            self.decided |= confirmed_now
        elif cfg.variant == "skip2" and mutation.any():
            # discard the mutation layer's update; the stream's readout goes back to its input's
            out = _keep_input_at_last_position(out, hidden, mutation)
            step["skipped"][:, layer - 1] |= mutation
            previous = self._readout(hidden[:, -1][None])[0]
            keep = torch.from_numpy(mutation).to(previous.device)[:, None]  # readouts live on the head's device
            self.prev_logp = torch.where(keep, previous, self.prev_logp)
        return out

    def _exit(self, out: torch.Tensor) -> torch.Tensor:
        """After layer ``L``: detect on the whole window at once, then feed the LM head from the exit layers."""
        step, window_start = self.c._step, self.c.window_start
        states = torch.stack(self.window_states)  # shape: (W + 1, batch, hidden), layers window_start-1..L
        mutation = self._feed(window_start - 1, self._readout(states))  # shape: (W, batch)
        step["mutation"][:, window_start - 1 :] = mutation.T
        has = mutation.any(0)
        if not has.any():
            return out
        exit_layer = np.where(has, window_start - 1 + mutation.argmax(0), self.c.num_layers)
        step["exit_layer"] = exit_layer
        rows = torch.arange(out.shape[0], device=out.device)
        index = torch.from_numpy(exit_layer - (window_start - 1)).to(out.device)
        last = states[index.to(states.device), rows.to(states.device)].to(out.device)  # shape: (batch, hidden)
        return torch.cat([out[:, :-1], last[:, None]], dim=1)


def _keep_input_at_last_position(out: torch.Tensor, hidden: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """``out`` with the last position of ``rows`` replaced by the layer's input (the layer skipped there)."""
    keep = torch.from_numpy(rows).to(out.device)[:, None]
    last = torch.where(keep, hidden[:, -1], out[:, -1])
    return torch.cat([out[:, :-1], last[:, None]], dim=1)
