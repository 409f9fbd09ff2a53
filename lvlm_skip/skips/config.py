"""What to skip and when: :class:`SkipConfig`, checked once, before the model is touched."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields

from ..anatomy import ModelAnatomy
from ..detection import DetectionConfig
from ..readout import READOUTS

logger = logging.getLogger(__name__)

VARIANTS = ("none", "skip1", "skip2", "skip3", "exit", "layers")
MODES = ("static", "online")
POSITIONS = ("generated", "all")
DECISIONS = ("lagged", "step")
KV_FILLS = ("project", "recompute")


@dataclass(frozen=True)
class SkipConfig:
    """What to skip and when. Layer numbers are 1-based (see :mod:`lvlm_skip.anatomy`).

    The variants and modes are defined in :mod:`lvlm_skip.skipping`; each field's docstring is its
    one-line definition.
    """

    variant: str = "none"
    """One of none, skip1, skip2, skip3, exit, layers."""
    mode: str = "static"
    """static (one skip set per row for the whole generation) or online (decided at every step)."""
    layers: tuple[int, ...] | None = None
    """Explicit layers to skip (variant "layers")."""
    critical_layer: int | None = None
    """Given critical layer c (skip1, skip3); measured per prompt (static) or per step (online) when None."""
    mutation_layers: tuple[int, ...] | None = None
    """Given mutation layers M (skip1 resumes at the first, skip2 skips all, exit leaves before the first)."""
    exit_layer: int | None = None
    """Given exit layer e (exit): the distribution is read from layer e."""
    keep_last: int = 5
    """skip3 keeps this many final layers (the paper: 5)."""
    positions: str = "generated"
    """Static mode: "generated" skips at the positions that predict a generated token (the prompt's last
    position and every generated one; the rest of the prompt, image included, runs every layer);
    "all" skips at every position (the model with those layers deleted)."""
    decide: str = "lagged"
    """Online skip1/skip3: "lagged" skips at step t after the layer where step t-1 confirmed its
    critical layer (one readout per step); "step" decides within step t, layer by layer."""
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    """Critical / mutation thresholds (:mod:`lvlm_skip.detection`)."""
    readout: str = "normed"
    """How layers are read out for the curves: normed (lm_head(norm(h_j))) or raw (the authors' code)."""
    candidates: int = 256
    """Online readout: size of the per-step candidate vocabulary; 0 reads the full vocabulary (exact)."""
    window_start: int | None = None
    """Online readout: the first layer read out each step (default: the detector's first layer - 1)."""
    kv_fill: str = "project"
    """How a layer skipped at a position gets its K/V there when it may run later: project or recompute."""
    profile: str | None = None
    """Provenance: the layer profile (profile.json) that gave critical_layer / mutation_layers, if any."""

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        for name, allowed in (("positions", POSITIONS), ("decide", DECISIONS), ("kv_fill", KV_FILLS), ("readout", READOUTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` (={getattr(self, name)!r}) has to be one of {allowed}")
        if self.mode == "online" and self.positions != "generated":
            raise ValueError("`positions` is a static-mode option: online mode always skips at generated positions only")
        if self.variant == "layers" and not self.layers:
            raise ValueError("variant 'layers' needs `layers`, the list of layers to skip")
        if self.layers is not None and self.variant != "layers":
            raise ValueError(f"`layers` is only for variant 'layers' (got variant {self.variant!r})")
        if self.variant == "layers" and self.mode == "online":
            raise ValueError("variant 'layers' is a static skip set: use mode='static'")
        for name in ("keep_last",):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` (={value!r}) has to be a positive int")
        if not isinstance(self.candidates, int) or isinstance(self.candidates, bool) or self.candidates < 0:
            raise ValueError(f"`candidates` (={self.candidates!r}) has to be an int >= 0")
        if isinstance(self.detection, dict):
            object.__setattr__(self, "detection", DetectionConfig.from_dict(self.detection))
        if not isinstance(self.detection, DetectionConfig):
            raise TypeError(f"`detection` has to be a DetectionConfig or a dict, got {type(self.detection).__name__}")
        for name in ("layers", "mutation_layers"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, (int, str)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                    raise TypeError(f"`{name}` has to be a list of layer numbers, got {value!r}")
                object.__setattr__(self, name, tuple(sorted(set(value))))
        for name in ("critical_layer", "exit_layer", "window_start"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise TypeError(f"`{name}` has to be a layer number (int), got {value!r}")
        if self.variant == "skip1" and self.critical_layer is not None and self.mutation_layers:
            if self.critical_layer + 1 >= self.mutation_layers[0]:
                raise ValueError(
                    f"skip1 skips the layers between the critical layer ({self.critical_layer}) and the first mutation "
                    f"layer ({self.mutation_layers[0]}): there are none, it would skip nothing"
                )

    @classmethod
    def from_kwargs(cls, **kwargs) -> "SkipConfig":
        """Build from keyword arguments, rejecting unknown ones with the list of known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**kwargs)

    def validate_for(self, anatomy: ModelAnatomy) -> None:
        """Check layer numbers against the model; raise ``ValueError`` with the valid range.

        A configuration that can never skip anything on this model (skip3 with the critical layer at or
        after ``L - keep_last``, skip1 whose span is empty) is an error too, not a silent no-op.
        """
        num_layers = anatomy.num_layers
        for layer in (self.layers or ()) + (self.mutation_layers or ()):
            anatomy.check_layer(layer)
        for name in ("critical_layer", "exit_layer", "window_start"):
            value = getattr(self, name)
            if value is not None:
                anatomy.check_layer(value)
        if self.layers is not None and len(self.layers) >= num_layers:
            raise ValueError(f"skipping layers {list(self.layers)} would skip every one of the {num_layers} layers")
        if self.variant == "skip3":
            if self.keep_last >= num_layers:
                raise ValueError(f"`keep_last` (={self.keep_last}) has to be smaller than the {num_layers} layers")
            if self.critical_layer is not None and self.critical_layer >= num_layers - self.keep_last:
                raise ValueError(
                    f"skip3 skips layers {self.critical_layer + 1}..{num_layers - self.keep_last} (critical layer + 1 .. L - "
                    f"keep_last): there are none, it would skip nothing"
                )
        if self.variant == "exit" and self.exit_layer == num_layers:
            logger.info("exit at the last layer %d is the stock model", num_layers)

    def to_dict(self) -> dict:
        """JSON-ready fields (tuples become lists, the detection config a dict)."""
        return asdict(self)
