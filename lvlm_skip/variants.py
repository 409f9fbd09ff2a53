"""The variant registry: one declaration per variant, and everything else derives from it.

A declaration (a :class:`Variant` subclass) gives the variant's name, its title in the paper, its
one-line definition, the layers it needs (``"critical"``, ``"mutation"``: what a profile, a preset
or a per-prompt measurement must supply), its online strategy (:class:`Span`, :class:`Discard`,
:class:`Exit`, or none), and its options type (:class:`~lvlm_skip.config.SkipConfig` or a peer's
config). The skipping variants also compute their layers here, in one place:

``c`` is a row's critical layer (0 = none), ``M`` its mutation layers, ``m = min(M)``, ``L`` the number
of layers; layer numbers are 1-based. Given layers (``SkipConfig.critical_layer``,
``mutation_layers``, ``exit_layer``) take precedence over measured ones.

=========  ==========================  ====================================================
variant    static skip set             online strategy (:mod:`lvlm_skip.skips.online` runs it)
=========  ==========================  ====================================================
none       nothing                     (nothing to decide)
skip1      ``c+1 .. m-1``              :class:`Span`: from the layer after the confirmation of ``c`` to ``m-1``
skip2      ``M``                       :class:`Discard`: a layer whose update spikes is dropped
skip3      ``c+1 .. L-keep_last``      :class:`Span`: from the layer after the confirmation of ``c`` to ``L-keep_last``
exit       ``e+1 .. L``, ``e = m-1``   :class:`Exit`: the distribution comes from the layer before the first mutation
layers     the given list              (static only)
dola       (every layer runs)          (acts at every step; no mode)
deco       (every layer runs)          (acts at every step; no mode)
vcd        (every layer runs)          (acts at every step; no mode)
=========  ==========================  ====================================================

A variant whose layers are missing (no critical layer found, no mutation) skips nothing for that row.
The command line (``--variants``), the harness, ``lvlm-skip speed``, the fig5 recipe and the reports
read :data:`VARIANTS`; adding a variant is one declaration here (plus its tests). The module is
torch-free, like :mod:`lvlm_skip.config`, so the command line's ``--help`` reads it directly.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

from .config import MODES, DecoConfig, DolaConfig, SkipConfig, SpeculativeOptions, VcdConfig

logger = logging.getLogger(__name__)

# The names of the declarations below (a test checks them against VARIANTS): a new variant adds its name here.
VariantName = Literal["none", "skip1", "skip2", "skip3", "exit", "layers", "dola", "deco", "vcd", "speculative"]
SkipVariantName = Literal["none", "skip1", "skip2", "skip3", "exit", "layers"]
PeerName = Literal["dola", "deco", "vcd"]
Need = Literal["critical", "mutation"]


# ------------------------------------------------------------------------------- online strategies


class OnlineStrategy:
    """How online mode acts on a step's observed window (the curve ``d_w .. d_L`` of the predicting
    position and the causal detector's critical / mutation layers); executed by
    :mod:`lvlm_skip.skips.online`, one step class per strategy."""


class Span(OnlineStrategy):
    """Once the critical layer is confirmed at layer ``k``, the variant's span after ``k``
    (:meth:`SkipVariant.span`) is skipped: at the next step (``decide="lagged"``) or at this one,
    layer by layer (``decide="step"``)."""


class Discard(OnlineStrategy):
    """A layer whose update spikes (a mutation) is dropped: the next layer runs on its input. Run
    speculatively: the step runs in full, and only a step whose curve spikes reruns the layers after
    the spike."""


class Exit(OnlineStrategy):
    """Every layer runs; a row whose step shows a mutation at ``m`` takes its distribution from ``h_{m-1}``."""


# ------------------------------------------------------------------------------------ declarations


class Variant:
    """A variant's declaration. Subclasses set the class attributes; instances are stateless."""

    name: ClassVar[VariantName]
    """The variant's name in ``wrap(model, name)`` and ``--variants``."""
    title: ClassVar[str]
    """Its name in the paper's tables (``skip.1``) or the peer's paper."""
    definition: ClassVar[str]
    """One line: what it does."""
    needs: ClassVar[tuple[Need, ...]] = ()
    """The layers it takes from a profile, a preset or a measurement: ``"critical"``, ``"mutation"``."""
    online: ClassVar[type[OnlineStrategy] | None] = None
    """How online mode executes it; ``None``: no online mode (or, for a peer, no mode at all)."""
    options: ClassVar[type] = SkipConfig
    """The dataclass whose fields are its ``wrap`` options."""
    is_peer: ClassVar[bool] = False
    """A decoding-time peer (acts at every step, skips nothing, has no mode)."""
    is_speculative: ClassVar[bool] = False
    """Lossless self-speculative decoding (a skip-set draft verified by the full model; no mode)."""

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes it runs in: static and online, static only, or none (a peer, speculative decoding)."""
        if self.is_peer or self.is_speculative:
            return ()
        return MODES if self.online is not None else ("static",)

    @property
    def uses_profile(self) -> bool:
        """Whether ``--profile`` / ``wrap(profile=...)`` gives it layers."""
        return bool(self.needs)

    def __repr__(self) -> str:
        return f"<variant {self.name}: {self.definition}>"


class SkipVariant(Variant):
    """A layer-skipping variant: its options are a :class:`~lvlm_skip.config.SkipConfig`."""

    skips: ClassVar[str] = ""
    """What it skips, as a table caption says it (``"the mutation layers M"``); empty if nothing fixed."""

    def layers_given(self, config: SkipConfig) -> bool:
        """Whether ``config`` fixes the layers, so nothing has to be measured in static mode."""
        return True

    def static_layers(self, config: SkipConfig, num_layers: int, critical: int, mutations: tuple[int, ...]) -> list[int]:
        """Sorted layers a static row skips, from its (given or measured) critical and mutation layers."""
        return []

    def span(self, config: SkipConfig, num_layers: int, decided_at: int, resume: int) -> tuple[int, int]:
        """:class:`Span` variants: the layers ``first..last`` skipped once the critical layer is confirmed at
        layer ``decided_at`` (``resume`` = the first mutation layer for skip1). Empty when ``first > last``."""
        return 1, 0

    def check(self, config: SkipConfig) -> None:
        """Model-independent checks of ``config`` for this variant (one-line ``ValueError``)."""

    def check_for_model(self, config: SkipConfig, num_layers: int) -> None:
        """Checks that need the model's number of layers (a skip set that can never skip anything is an error)."""

    @staticmethod
    def critical(config: SkipConfig, critical: int) -> int:
        """The given critical layer, else the measured one."""
        return config.critical_layer if config.critical_layer is not None else critical

    @staticmethod
    def mutations(config: SkipConfig, mutations: tuple[int, ...]) -> tuple[int, ...]:
        """The given mutation layers (possibly empty: a profile that found none), else the measured ones."""
        return tuple(config.mutation_layers) if config.mutation_layers is not None else tuple(mutations)


class NoneVariant(SkipVariant):
    name = "none"
    title = "stock"
    definition = "the stock model: no hook at all"

    @property
    def modes(self) -> tuple[str, ...]:
        """Both: in either mode it is the stock model (so ``--mode online`` may include it)."""
        return MODES


class Skip1(SkipVariant):
    name = "skip1"
    title = "skip.1"
    definition = "skip the stabilization stage: layers c+1 .. m-1, from the critical layer to the first mutation layer"
    skips = "c+1..m-1, critical layer to the first mutation layer"
    needs = ("critical", "mutation")
    online = Span

    def layers_given(self, config):
        return config.critical_layer is not None and config.mutation_layers is not None

    def static_layers(self, config, num_layers, critical, mutations):
        c, mutation = self.critical(config, critical), self.mutations(config, mutations)
        return list(range(c + 1, mutation[0])) if c and mutation else []

    def span(self, config, num_layers, decided_at, resume):
        return decided_at + 1, resume - 1 if resume else 0

    def check(self, config):
        c, mutation = config.critical_layer, config.mutation_layers
        if c is not None and mutation and c + 1 >= mutation[0]:
            raise ValueError(f"skip1 skips the layers between the critical layer ({c}) and the first mutation layer "
                             f"({mutation[0]}): there are none, it would skip nothing")


class Skip2(SkipVariant):
    name = "skip2"
    title = "skip.2"
    definition = "skip the mutation layers M"
    skips = "the mutation layers M"
    needs = ("mutation",)
    online = Discard

    def layers_given(self, config):
        return config.mutation_layers is not None

    def static_layers(self, config, num_layers, critical, mutations):
        return list(self.mutations(config, mutations))


class Skip3(SkipVariant):
    name = "skip3"
    title = "skip.3"
    definition = "jump from the critical layer to the last keep_last layers: layers c+1 .. L-keep_last"
    skips = "c+1..L-keep_last, critical layer to the last keep_last layers"
    needs = ("critical",)
    online = Span

    def layers_given(self, config):
        return config.critical_layer is not None

    def static_layers(self, config, num_layers, critical, mutations):
        c = self.critical(config, critical)
        return list(range(c + 1, num_layers - config.keep_last + 1)) if c else []

    def span(self, config, num_layers, decided_at, resume):
        return decided_at + 1, num_layers - config.keep_last

    def check_for_model(self, config, num_layers):
        if config.keep_last >= num_layers:
            raise ValueError(f"`keep_last` (={config.keep_last}) has to be smaller than the {num_layers} layers")
        c = config.critical_layer
        if c is not None and c >= num_layers - config.keep_last:
            raise ValueError(f"skip3 skips layers {c + 1}..{num_layers - config.keep_last} (critical layer + 1 .. L - "
                             f"keep_last): there are none, it would skip nothing")


class ExitVariant(SkipVariant):
    name = "exit"
    title = "exit"
    definition = "layer exit (an extension, not in the paper): the distribution comes from layer e = m-1 (or exit_layer)"
    needs = ("mutation",)
    online = Exit

    def layers_given(self, config):
        return config.exit_layer is not None or config.mutation_layers is not None

    def static_layers(self, config, num_layers, critical, mutations):
        if config.exit_layer is not None:
            e = config.exit_layer
        else:
            mutation = self.mutations(config, mutations)
            e = mutation[0] - 1 if mutation else num_layers
        return list(range(e + 1, num_layers + 1))

    def check_for_model(self, config, num_layers):
        if config.exit_layer == num_layers:
            logger.info("exit at the last layer %d is the stock model", num_layers)


class LayersVariant(SkipVariant):
    name = "layers"
    title = "layers"
    definition = "skip an explicit list of layers"

    def static_layers(self, config, num_layers, critical, mutations):
        return list(config.layers)

    def check(self, config):
        if not config.layers:
            raise ValueError("variant 'layers' needs `layers`, the list of layers to skip")



class PeerVariant(Variant):
    """A decoding-time peer (:mod:`lvlm_skip.peers`): every layer runs, the logits are contrasted."""

    is_peer = True


class Dola(PeerVariant):
    name = "dola"
    title = "DoLa"
    definition = "contrast the final layer with the premature layer that differs most (Chuang et al., ICLR 2024)"
    options = DolaConfig


class Deco(PeerVariant):
    name = "deco"
    title = "DeCo"
    definition = "add the logits of the anchor layer that is most confident on the final candidates (Wang et al., ICLR 2025)"
    options = DecoConfig


class Vcd(PeerVariant):
    name = "vcd"
    title = "VCD"
    definition = "contrast the logits on the image with those on a diffusion-noised copy (Leng et al., CVPR 2024)"
    options = VcdConfig


class Speculative(Variant):
    name = "speculative"
    title = "speculative"
    definition = ("lossless self-speculative decoding: a skip-set draft (skip1, skip3, exit or layers; "
                  "`speculative:skip1`) proposes tokens, the full model verifies them in one forward")
    needs = ("critical", "mutation")  # the draft's layers, as much of them as its variant needs
    options = SpeculativeOptions
    is_speculative = True


#: Every variant, by name, in the order of the reports.
VARIANTS: dict[VariantName, Variant] = {
    v.name: v for v in (NoneVariant(), Skip1(), Skip2(), Skip3(), ExitVariant(), LayersVariant(), Dola(), Deco(), Vcd(),
                        Speculative())
}
#: The layer-skipping variants' names (their options are a SkipConfig).
SKIP_VARIANTS: tuple[SkipVariantName, ...] = tuple(name for name, v in VARIANTS.items()
                                                   if not v.is_peer and not v.is_speculative)
#: The peers' names.
PEERS: tuple[PeerName, ...] = tuple(name for name, v in VARIANTS.items() if v.is_peer)
#: The variants that take their layers from a profile.
PROFILE_VARIANTS: tuple[str, ...] = tuple(name for name, v in VARIANTS.items() if v.uses_profile)


def variant(name: VariantName) -> Variant:
    """The declaration of ``name``; ``ValueError`` naming the known variants for an unknown one."""
    declared = VARIANTS.get(name) if isinstance(name, str) else None
    if declared is None:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return declared


def skip_variant(name: SkipVariantName) -> SkipVariant:
    """The declaration of the layer-skipping variant ``name`` (a peer or an unknown name: ``ValueError``)."""
    declared = variant(name)
    if not isinstance(declared, SkipVariant):
        raise ValueError(f"{name!r} is a peer, not a layer-skipping variant; choose one of {', '.join(SKIP_VARIANTS)}")
    return declared


def static_skip_set(config: SkipConfig, num_layers: int, critical: int = 0, mutations=()) -> list[int]:
    """The 1-based layers a static row skips (given layers first, else the measured ``critical`` / ``mutations``).

    At least one layer always runs: a set that would cover every layer keeps layer 1.
    """
    layers = skip_variant(config.variant).static_layers(config, num_layers, critical, tuple(mutations))
    if len(layers) >= num_layers:
        layers = [j for j in layers if j != 1]
    return layers
