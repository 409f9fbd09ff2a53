"""Every option of the package as a frozen, torch-free dataclass, checked once when it is built.

:class:`SkipConfig` (what to skip and when), :class:`DetectionConfig` (the critical / mutation layer
thresholds, :mod:`lvlm_skip.detection`), and the peers' options (:class:`DolaConfig`,
:class:`DecoConfig`, :class:`VcdConfig`, defaults from the released code, sources in
:mod:`lvlm_skip.peers`). Unknown keys are refused with the list of known ones, wrong values with a
one-line ``ValueError`` / ``TypeError`` naming the field. Layer numbers are checked against a model by
:meth:`SkipConfig.validate_for`.

This module imports no torch (a test enforces it), so the command line's ``--help``, the variant
registry (:mod:`lvlm_skip.variants`) and the harness's option checks read these classes directly.
The string enums are ``Literal`` types whose allowed values are the tuples next to them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from .anatomy import ModelAnatomy

logger = logging.getLogger(__name__)

# -- the string enums of the package: each Literal is the one list of its values (the tuples are its args;
#    modules that must not import this one keep a copy, and tests/test_literals.py checks that they agree).
#    The variants' names are the registry's (lvlm_skip.variants), beside their declarations.

# the skips (SkipConfig, DetectionConfig) and the variant registry
Mode = Literal["static", "online"]
Positions = Literal["generated", "all"]
Decision = Literal["lagged", "step"]
KvFill = Literal["project", "recompute"]
ReadoutName = Literal["normed", "raw"]
CriticalRule = Literal["jsd", "top1", "jsd_and_top1"]
MutationRule = Literal["spike", "top1", "spike_or_top1", "spike_and_top1"]
# the peers
DolaLayers = Literal["low", "high"]
# readouts, divergences and figures
Reduction = Literal["sum", "paper"]
FigureAxis = Literal["layer", "paper"]
Normalization = Literal["none", "layer"]
LastState = Literal["raw", "normed"]
TsneScaling = Literal["none", "maxabs"]
# inputs, data and benchmarks
WordSplit = Literal["punctuation", "regex"]
DataFormat = Literal["amber", "coco", "pope"]
PopeSplit = Literal["random", "popular", "adversarial"]
AmberTaskName = Literal["g", "d", "a", "de", "da", "dr"]
LanguageBackendChoice = Literal["auto", "official", "offline"]
SynonymTable = Literal["original", "corrected"]
Closeness = Literal["identical", "edit_similarity", "unigram_f1", "rouge_l_f1"]
# the speed benchmark
SpeedStatistic = Literal["min", "median"]
SpeedClock = Literal["wall", "cpu"]

MODES: tuple[str, ...] = get_args(Mode)
POSITIONS: tuple[str, ...] = get_args(Positions)
DECISIONS: tuple[str, ...] = get_args(Decision)
KV_FILLS: tuple[str, ...] = get_args(KvFill)
READOUTS: tuple[str, ...] = get_args(ReadoutName)
CRITICAL_RULES: tuple[str, ...] = get_args(CriticalRule)
MUTATION_RULES: tuple[str, ...] = get_args(MutationRule)
DOLA_LAYER_BUCKETS: tuple[str, ...] = get_args(DolaLayers)

# The peers' defaults (sources in lvlm_skip.peers.dola / deco / vcd).
DOLA_RELATIVE_TOP = 0.1
DOLA_REPETITION_PENALTY = 1.2
DECO_ALPHA = 0.6
DECO_TOP_P = 0.9
DECO_TOP_K = 20
DECO_WINDOW_LLAVA_7B = (20, 28)  # inclusive, for L = 32
VCD_ALPHA = 1.0
VCD_BETA = 0.1
VCD_NOISE_STEP = 500
VCD_DIFFUSION_STEPS = 1000

def check_number(name: str, value: float, low: float, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        bound = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise ValueError(f"`{name}` (={value!r}) has to be a number {bound}")


def check_int(name: str, value: int, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"`{name}` (={value!r}) has to be an integer {bound}")



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
    critical_rule: CriticalRule = "jsd"
    """What makes a layer low: "jsd", "top1" (top-1 token unchanged) or "jsd_and_top1"."""
    mutation_rule: MutationRule = "spike"
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
class SkipConfig:
    """What to skip and when. Layer numbers are 1-based (see :mod:`lvlm_skip.anatomy`).

    The variants are declared in :mod:`lvlm_skip.variants` (what each skips, what it needs, how it
    runs online), the modes in :mod:`lvlm_skip.skips`; each field's docstring is its one-line definition.
    """

    variant: variants.SkipVariantName = "none"
    """A layer-skipping variant of :data:`lvlm_skip.variants.VARIANTS`: none, skip1, skip2, skip3, exit, layers."""
    mode: Mode = "static"
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
    positions: Positions = "generated"
    """Static mode: "generated" skips at the positions that predict a generated token (the prompt's last
    position and every generated one; the rest of the prompt, image included, runs every layer);
    "all" skips at every position (the model with those layers deleted)."""
    decide: Decision = "lagged"
    """Online skip1/skip3: "lagged" skips at step t after the layer where step t-1 confirmed its
    critical layer (one readout per step); "step" decides within step t, layer by layer."""
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    """Critical / mutation thresholds (:mod:`lvlm_skip.detection`)."""
    readout: ReadoutName = "normed"
    """How layers are read out for the curves: normed (lm_head(norm(h_j))) or raw (the authors' code)."""
    candidates: int = 256
    """Online readout: size of the per-step candidate vocabulary; 0 reads the full vocabulary (exact)."""
    window_start: int | None = None
    """Online readout: the first layer read out each step (default: the detector's first layer - 1)."""
    kv_fill: KvFill = "project"
    """How a layer skipped at a position gets its K/V there when it may run later: project or recompute."""
    profile: str | None = None
    """Provenance: the layer profile (profile.json) that gave critical_layer / mutation_layers, if any."""

    def __post_init__(self):
        declared = variants.skip_variant(self.variant)  # raises on an unknown name
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        for name, allowed in (("positions", POSITIONS), ("decide", DECISIONS), ("kv_fill", KV_FILLS), ("readout", READOUTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` (={getattr(self, name)!r}) has to be one of {allowed}")
        if self.mode == "online" and self.positions != "generated":
            raise ValueError("`positions` is a static-mode option: online mode always skips at generated positions only")
        if self.mode not in declared.modes:
            raise ValueError(f"variant {self.variant!r} has no {self.mode} mode (it has: {', '.join(declared.modes)})")
        if self.layers is not None and self.variant != "layers":
            raise ValueError(f"`layers` is only for variant 'layers' (got variant {self.variant!r})")
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
        declared.check(self)

    @classmethod
    def from_kwargs(cls, **kwargs) -> "SkipConfig":
        """Build from keyword arguments, rejecting unknown ones with the list of known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**kwargs)

    def validate_for(self, anatomy: "ModelAnatomy") -> None:
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
        variants.skip_variant(self.variant).check_for_model(self, num_layers)

    def to_dict(self) -> dict:
        """JSON-ready fields (tuples become lists, the detection config a dict)."""
        return asdict(self)


@dataclass(frozen=True)
class DolaConfig:
    """DoLa options (transformers 4.x defaults; :mod:`lvlm_skip.peers.dola`)."""

    layers: DolaLayers | tuple[int, ...] = "high"
    """Candidate premature layers: "low", "high" (4.x's buckets) or a list of layer numbers (0 = embeddings)."""
    relative_top: float = DOLA_RELATIVE_TOP
    """Plausibility filter: keep tokens with p >= relative_top * max p of the final layer."""

    def __post_init__(self):  # the model-independent checks; the layers are checked against the model by wrap
        if isinstance(self.layers, str):
            if self.layers not in DOLA_LAYER_BUCKETS:
                raise ValueError(f"`layers` (={self.layers!r}) has to be 'low', 'high' or a list of layer indices")
        elif not self.layers or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in self.layers):
            raise ValueError(f"`layers` (={self.layers!r}) has to be 'low', 'high' or a list of layer indices >= 0")
        check_number("relative_top", self.relative_top, 0.0, 1.0)


@dataclass(frozen=True)
class DecoConfig:
    """DeCo options (the released code's defaults for LLaVA-1.5-7B; :mod:`lvlm_skip.peers.deco`)."""

    layers: tuple[int, ...] | None = None
    """Anchor window (layer numbers); default 20..28 for 32 layers, scaled by L / 32 otherwise."""
    alpha: float = DECO_ALPHA
    """Weight of the anchor's logits."""
    top_p: float = DECO_TOP_P
    """Candidates: the final layer's top-k tokens cut at this cumulative probability."""
    top_k: int = DECO_TOP_K
    """Candidates: at most this many of the final layer's top tokens."""

    def __post_init__(self):
        if self.layers is not None and (not self.layers or any(
                isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in self.layers)):
            raise ValueError(f"`layers` (={self.layers!r}) has to be a non-empty list of layer indices >= 0")
        check_number("alpha", self.alpha, 0.0)
        check_number("top_p", self.top_p, 0.0, 1.0)
        check_int("top_k", self.top_k, 1)


@dataclass(frozen=True)
class VcdConfig:
    """VCD options (the paper's defaults; :mod:`lvlm_skip.peers.vcd`)."""

    alpha: float = VCD_ALPHA
    """Contrast strength: (1 + alpha) z - alpha z_noised."""
    beta: float = VCD_BETA
    """Adaptive plausibility: keep tokens with p >= beta * max p of the clean distribution."""
    noise_step: int = VCD_NOISE_STEP
    """Diffusion step of the noised image (of 1000)."""
    seed: int = 0
    """Seed of the image noise (mixed with a hash of each image)."""

    def __post_init__(self):
        check_number("alpha", self.alpha, 0.0)
        check_number("beta", self.beta, 0.0, 1.0)
        check_int("noise_step", self.noise_step, 0, VCD_DIFFUSION_STEPS - 1)


@dataclass(frozen=True)
class LayerChoice:
    """The layers the skip variants use, and where they come from: one value for every producer.

    A preset (:meth:`lvlm_skip.profiles.presets.LayerPreset.layer_choice`), a profile
    (:meth:`lvlm_skip.profiles.LayerProfile.layer_choice`), a measurement on a prompt
    (:meth:`lvlm_skip.skips.calibration.PromptLayers.layer_choice`), the speed benchmark's plan
    (:func:`lvlm_skip.speed.benchmark.layer_plan`) and the fig5 recipe all give one. Layers are 1-based.

    Attributes:
        critical: The critical layer ``c`` (0: none was found); ``None``: not given (measured where needed).
        mutations: The mutation layers ``M``, ascending (empty: none found); ``None``: not given.
        keep_last: skip.3 keeps this many final layers.
        source: Where the values come from (``"preset llava-1.5-7b"``, ``"profile runs/p/profile.json"``).
    """

    critical: int | None = None
    mutations: tuple[int, ...] | None = None
    keep_last: int = 5
    source: str = ""

    def __post_init__(self):
        if self.critical is not None:
            check_int("critical", self.critical, 0)
        if self.mutations is not None:
            if isinstance(self.mutations, (int, str)):
                raise TypeError(f"`mutations` has to be a list of layer numbers, got {self.mutations!r}")
            for layer in self.mutations:
                check_int("mutations", layer, 1)
            object.__setattr__(self, "mutations", tuple(sorted(set(self.mutations))))
        check_int("keep_last", self.keep_last, 1)

    def wrap_options(self, variant: variants.SkipVariantName) -> dict:
        """The :class:`SkipConfig` options of ``variant`` these layers fix: only what the variant needs
        (:attr:`lvlm_skip.variants.Variant.needs`), and only the values that are given."""
        needs = variants.variant(variant).needs
        options: dict = {}
        if "critical" in needs and self.critical is not None:
            options["critical_layer"] = self.critical
        if "mutation" in needs and self.mutations is not None:
            options["mutation_layers"] = self.mutations
        if variant == "skip3":
            options["keep_last"] = self.keep_last
        return options


#: the skipping variants a speculative draft can be made of
SPECULATIVE_DRAFTS = ("skip1", "skip3", "exit", "layers")
#: how a speculative draft's length k moves between rounds
SPECULATIVE_SCHEDULES = ("constant", "heuristic", "expected")


@dataclass(frozen=True)
class SpeculativeOptions:
    """``wrap(model, variant="speculative", ...)``'s options (:mod:`lvlm_skip.speculative`); layer numbers 1-based.

    The draft's layers are its variant's (:class:`SkipConfig` fields of the same names), given or from a profile.
    """

    draft: str = "skip3"
    """The skip set that drafts: skip1, skip3, exit or layers."""
    k: int = 4
    """The most draft tokens per verify pass."""
    threshold: float | None = None
    """Adaptive drafting: stop after a draft token whose draft probability is below this; None: always k."""
    critical_layer: int | None = None
    """The draft's critical layer c (skip1, skip3)."""
    mutation_layers: tuple[int, ...] | None = None
    """The draft's mutation layers (skip1 resumes at the first; exit leaves before it)."""
    exit_layer: int | None = None
    """The exit draft's layer e."""
    layers: tuple[int, ...] | None = None
    """The layers draft's explicit list."""
    keep_last: int = 5
    """skip3: the final layers the draft keeps."""
    schedule: str = "constant"
    """How k moves between rounds: constant; heuristic (+2 after a fully accepted round, -1 otherwise); or
    expected (each round the k in 0..k with the most expected tokens per cost, from the acceptance so far:
    :class:`lvlm_skip.speculative.ExpectedGainSchedule`)."""
    lookup: int = 0
    """n-gram lookup before the layer draft (prompt lookup, Saxena 2023): a round first looks for the sequence's
    last ``lookup_ngram`` (down to 1) tokens earlier in the prompt and output and, on a match, proposes up to
    ``lookup`` of the tokens that followed it, at no draft cost; the layer draft runs only where nothing
    matches. 0: off (:func:`lvlm_skip.speculative.lookup_candidates`)."""
    lookup_ngram: int = 2
    """The longest suffix n-gram the lookup matches (it tries ``lookup_ngram`` down to 1)."""

    def __post_init__(self):
        if self.draft not in SPECULATIVE_DRAFTS:
            raise ValueError(f"unknown draft {self.draft!r}; choose one of {', '.join(SPECULATIVE_DRAFTS)}")
        check_int("k", self.k, 1)
        if self.threshold is not None:
            check_number("threshold", self.threshold, 0.0, 1.0)
        if self.schedule not in SPECULATIVE_SCHEDULES:
            raise ValueError(f"`schedule` (={self.schedule!r}) has to be one of {SPECULATIVE_SCHEDULES}")
        check_int("lookup", self.lookup, 0)
        check_int("lookup_ngram", self.lookup_ngram, 1)


def build_config(config_class: type, **options):
    """``config_class(**options)``, rejecting unknown options with the list of known ones; lists become tuples."""
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; known: {sorted(known)}")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return config_class(**options)


# The registry declares which variant takes which config; it reads the classes above, so it comes last.
from . import variants  # noqa: E402
