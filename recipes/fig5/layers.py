"""Which layers the Fig. 5 variants skip, resolved once from the command line, before any model loads.

The variants (§4.2, Fig. 5), with 1-based layers, ``c`` the critical layer, ``M`` the mutation
layers, ``m = min(M)`` and ``L`` the decoder depth:

* **skip.1** (``skip1``): skips ``c+1 .. m-1``, jumping from the critical layer to the first
  mutation layer (the stabilization stage);
* **skip.2** (``skip2``): skips ``M``;
* **skip.3** (``skip3``): skips ``c+1 .. L-keep_last``, jumping from the critical layer to the last
  ``keep_last`` (the paper: 5) layers.

``c``, ``M`` and ``keep_last`` come from the first of these that gives them:

1. ``--critical``, ``--mutation``, ``--keep-last``;
2. ``--profile profile.json`` (``lvlm-skip profile``): the model's ``c`` and ``M`` measured over
   many tokens (:mod:`lvlm_skip.profiles`), also passed to ``lvlm_skip.wrap(..., profile=...)``;
3. ``--preset`` (:mod:`lvlm_skip.profiles.presets`): ``c`` and ``keep_last`` as the paper reads them for
   LLaVA-1.5-7B / 13B. The paper gives no mutation-layer numbers, so a preset gives no ``M``.

With none of them, static mode measures ``c`` and ``M`` on each prompt (the JSD curve of the
prompt's last position, one extra pass: :mod:`lvlm_skip.skips.calibration`) and online mode
decides at every step. Once a layer is given in static mode, every requested variant must have
all the layers it needs (skip.1: ``c`` and ``M``; skip.2: ``M``; skip.3: ``c``): a missing one is a
one-line error saying where to get it, not a silent mix of given and measured layers. An empty
``M`` (a profile that found no recurring mutation layer) is an error for skip.1 and skip.2 in
either mode, since they would skip nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lvlm_skip.config import LayerChoice
from lvlm_skip.errors import InputError, one_line
from lvlm_skip.variants import VARIANTS

#: The paper's skip variants, in its order.
SKIP_VARIANTS = ("skip1", "skip2", "skip3")
#: Column titles: the paper's names (Fig. 5 calls the stock model "original"); from the registry.
TITLES = {"none": "original", **{v: VARIANTS[v].title for v in SKIP_VARIANTS}}


def format_layers(layers) -> str:
    """``[5, 6, 7, 8, 12, 13]`` -> ``"5-8, 12, 13"`` (runs of three or more collapsed); ``[]`` -> ``"none"``."""
    layers = sorted(layers)
    if not layers:
        return "none"
    runs, start = [], None
    for i, layer in enumerate(layers):
        start = layer if start is None else start
        if i + 1 == len(layers) or layers[i + 1] != layer + 1:
            runs.append(f"{start}-{layer}" if layer - start >= 2 else ", ".join(map(str, range(start, layer + 1))))
            start = None
    return ", ".join(runs)


@dataclass(frozen=True)
class Fig5Layers:
    """The fig5 recipe's resolved settings: its variants, mode and positions, and the layers of every
    variant with where each value comes from (see the module docstring); :attr:`layers` is the
    package's :class:`~lvlm_skip.config.LayerChoice`.

    Attributes:
        variants: The requested skip variants, in the paper's order.
        mode: ``static`` (one skip set per prompt) or ``online`` (decided at every step).
        positions: Static mode: ``generated`` (only the positions that predict a generated token
            skip; the prompt runs every layer) or ``all`` (the model with those layers deleted).
        keep_last: skip.3 keeps this many final layers.
        critical: The given critical layer ``c``, or ``None`` (measured).
        mutation: The given mutation layers ``M`` (possibly empty), or ``None`` (measured).
        critical_source, mutation_source, keep_last_source: Where each value comes from, e.g.
            ``"--critical"``, ``"preset llava-1.5-7b"``, ``"profile runs/p/profile.json"``.
        preset: The ``--preset`` name, if any.
        profile: The ``--profile`` path, if any.
        num_layers: The decoder depth the preset or profile is for, if any.
    """

    variants: tuple[str, ...]
    mode: str
    positions: str
    keep_last: int
    critical: int | None = None
    mutation: tuple[int, ...] | None = None
    critical_source: str = ""
    mutation_source: str = ""
    keep_last_source: str = "default"
    preset: str | None = None
    profile: str | None = None
    num_layers: int | None = None

    @property
    def layers(self) -> LayerChoice:
        """The given ``c``, ``M`` and ``keep_last`` as the package's :class:`~lvlm_skip.config.LayerChoice`."""
        sources = "; ".join(f"{name} from {where}" for name, where in (
            ("c", self.critical_source), ("M", self.mutation_source), ("keep_last", self.keep_last_source)) if where)
        return LayerChoice(self.critical, self.mutation, self.keep_last, source=sources)

    @property
    def measured_per_prompt(self) -> bool:
        """Static mode with no layer given: ``c`` and ``M`` are measured on each prompt."""
        return self.mode == "static" and self.critical is None and self.mutation is None

    def wrap_options(self, variant: str) -> dict:
        """``lvlm_skip.wrap`` / ``lvlm_skip.skipping`` options for ``variant`` (``none``: the stock model)."""
        options: dict = {"mode": self.mode}
        if variant == "none":
            return options
        if self.mode == "static":
            options["positions"] = self.positions
        options.update(self.layers.wrap_options(variant))
        if self.profile is not None:
            options["profile"] = self.profile
        return options

    def check_depth(self, num_layers: int) -> None:
        """Raise :class:`InputError` unless the preset or profile is for ``num_layers`` layers and the given
        layers are in ``1..num_layers``; needs only the model's config, so it runs before the weights load.
        """
        if self.num_layers is not None and self.num_layers != num_layers:
            source = f"profile {self.profile!r}" if self.profile else f"preset {self.preset}"
            raise InputError(f"{source} is for a {self.num_layers}-layer model; the model has {num_layers} layers")
        for name, layer in [("critical layer", self.critical), *(("mutation layer", m) for m in self.mutation or ())]:
            if layer is not None and not 1 <= layer <= num_layers:
                raise InputError(f"{name} {layer} is out of range: the model has layers 1..{num_layers}")

    def check_model(self, anatomy) -> None:
        """:meth:`check_depth`, then every variant's options checked by ``lvlm_skip`` against the model of ``anatomy``."""
        self.check_depth(anatomy.num_layers)
        for variant in self.variants:
            try:
                _skip_config(variant, self.wrap_options(variant)).validate_for(anatomy)
            except (TypeError, ValueError) as error:
                raise InputError(f"{TITLES[variant]}: {one_line(error)}") from None

    def describe(self) -> str:
        """One line for the table caption and the log: the layers and their sources."""
        if self.measured_per_prompt:
            text = "c and M measured per prompt (on the JSD curve of the prompt's last position)"
        else:
            needed = {name for v in self.variants for name in VARIANTS[v].needs}
            parts = []
            if "critical" in needed:
                parts.append(f"c = {self.critical} ({self.critical_source})" if self.critical is not None
                             else "c detected at every step")
            if "mutation" in needed:
                parts.append(f"M = {format_layers(self.mutation)} ({self.mutation_source})" if self.mutation is not None
                             else "M detected at every step")
            text = ", ".join(parts)
        if "skip3" in self.variants:
            source = "" if self.keep_last_source == "default" else f" ({self.keep_last_source})"
            text += f", keep_last {self.keep_last}{source}"
        where = {"generated": "skipping at generated positions only", "all": "skipping at every position"}
        return f"{self.mode} mode" + (f", {where[self.positions]}" if self.mode == "static" else "") + f"; {text}"

    def to_dict(self) -> dict:
        """JSON-ready fields, and ``measured``: ``"per prompt"``, ``"per step"`` or ``None`` (all given)."""
        data = asdict(self)
        data["mutation"] = list(self.mutation) if self.mutation is not None else None
        data["variants"] = list(self.variants)
        data["measured"] = ("per prompt" if self.measured_per_prompt
                            else "per step" if self.mode == "online" and None in (self.critical, self.mutation) else None)
        data["description"] = self.describe()
        return data


def resolve_layers(
    variants: tuple[str, ...],
    *,
    mode: str = "static",
    positions: str = "generated",
    critical: int | None = None,
    mutation: tuple[int, ...] | None = None,
    keep_last: int | None = None,
    preset: str | None = None,
    profile: str | None = None,
) -> Fig5Layers:
    """The :class:`Fig5Layers` of the command-line values (precedence in the module docstring).

    Raises:
        InputError: an unknown preset, an unreadable profile, a preset and a profile for different
            depths, a variant missing a layer it needs, or options ``lvlm_skip`` rejects.
    """
    from lvlm_skip.profiles.presets import get_preset
    from lvlm_skip.profiles import LayerProfile

    if mode == "online" and positions != "generated":
        raise InputError(f"--positions {positions} is a static-mode option: online mode skips at generated positions only")
    layer_preset = get_preset(preset) if preset else None
    layer_profile = LayerProfile.load(profile) if profile else None
    if layer_preset and layer_profile and layer_preset.num_layers != layer_profile.num_layers:
        raise InputError(f"preset {preset} is for {layer_preset.num_layers} layers but profile {profile!r} was measured "
                         f"on a {layer_profile.num_layers}-layer model")
    values: dict = {}
    # 1. the critical layer: flag, profile (when it found one), preset
    if critical is not None:
        values.update(critical=critical, critical_source="--critical")
    elif layer_profile and layer_profile.critical_layer:
        values.update(critical=layer_profile.critical_layer, critical_source=f"profile {profile}")
    elif layer_preset:
        values.update(critical=layer_preset.critical_layer, critical_source=f"preset {preset}")
    # 2. the mutation layers: flag, profile (possibly none); a preset gives none
    if mutation is not None:
        values.update(mutation=tuple(mutation), mutation_source="--mutation")
    elif layer_profile:
        values.update(mutation=tuple(layer_profile.mutation_layers), mutation_source=f"profile {profile}")
    # 3. keep_last: flag, preset, the paper's 5
    if keep_last is not None:
        values.update(keep_last=keep_last, keep_last_source="--keep-last")
    elif layer_preset:
        values.update(keep_last=layer_preset.keep_last, keep_last_source=f"preset {preset}")
    depth = layer_profile.num_layers if layer_profile else layer_preset.num_layers if layer_preset else None
    choice = Fig5Layers(variants=tuple(v for v in SKIP_VARIANTS if v in variants), mode=mode, positions=positions,
                         keep_last=values.pop("keep_last", 5), preset=preset, profile=profile, num_layers=depth, **values)
    _check_needs(choice)
    for variant in choice.variants:
        try:
            _skip_config(variant, choice.wrap_options(variant))
        except (TypeError, ValueError) as error:
            raise InputError(f"{TITLES[variant]}: {one_line(error)}") from None
    return choice


def _check_needs(choice: Fig5Layers) -> None:
    """Every variant has the layers it needs (static mode once a layer is given), and no empty ``M``."""
    given = choice.critical is not None or choice.mutation is not None
    for variant in choice.variants:
        title = TITLES[variant]
        if "mutation" in VARIANTS[variant].needs and choice.mutation == ():
            raise InputError(f"{title} would skip nothing: profile {choice.profile!r} found no mutation layer that recurs "
                             "across tokens; pass --mutation M1,M2 or leave it out of --variants")
        if choice.mode != "static" or not given:
            continue
        if "mutation" in VARIANTS[variant].needs and choice.mutation is None:
            reason = (f"the preset {choice.preset} gives only the critical layer (the paper gives no mutation-layer numbers)"
                      if choice.preset else "only --critical was given")
            raise InputError(f"{title} needs mutation layers and {reason}: pass --mutation M1,M2 or --profile profile.json "
                             "(from `lvlm-skip profile`), leave it out of --variants, or give no layers at all (no --preset) "
                             "to measure them per prompt")
        if "critical" in VARIANTS[variant].needs and choice.critical is None:
            reason = f"profile {choice.profile!r} found none" if choice.profile else "only --mutation was given"
            raise InputError(f"{title} needs the critical layer and {reason}: pass --critical C or a --preset, or leave it "
                             "out of --variants")


def _skip_config(variant: str, options: dict):
    """The :class:`~lvlm_skip.skips.SkipConfig` that ``lvlm_skip.wrap`` will build (checks what needs no model)."""
    from lvlm_skip.skips import SkipConfig

    return SkipConfig.from_kwargs(variant=variant, **options)
