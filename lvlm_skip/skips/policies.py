"""One policy per variant: the only place where the layers a variant skips are computed.

``c`` is a row's critical layer (0 = none), ``M`` its mutation layers, ``m = min(M)``, ``L`` the number
of layers; a layer number is 1-based. Given layers (``SkipConfig.critical_layer``,
``mutation_layers``, ``exit_layer``) take precedence over measured ones.

=========  ==========================  ====================================================
variant    static skip set             online execution (:mod:`lvlm_skip.skipping.online`)
=========  ==========================  ====================================================
none       nothing                     nothing
skip1      ``c+1 .. m-1``              span: from the layer after the confirmation of ``c`` to ``m-1``
skip2      ``M``                       discard: a layer whose update spikes is dropped
skip3      ``c+1 .. L-keep_last``      span: from the layer after the confirmation of ``c`` to ``L-keep_last``
exit       ``e+1 .. L``, ``e = m-1``   exit: the distribution comes from the layer before the first mutation
layers     the given list              (static only)
=========  ==========================  ====================================================

A variant whose layers are missing (no critical layer found, no mutation) skips nothing for that row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .config import SkipConfig


@dataclass(frozen=True)
class VariantPolicy:
    """Base class. ``online`` names how online mode executes the variant: "span", "discard", "exit" or ""."""

    name: ClassVar[str] = "none"
    online: ClassVar[str] = ""

    def layers_given(self, config: SkipConfig) -> bool:
        """Whether ``config`` fixes the layers, so nothing has to be measured in static mode."""
        return True

    def static_layers(self, config: SkipConfig, num_layers: int, critical: int, mutations: tuple[int, ...]) -> list[int]:
        """Sorted layers a static row skips, from its (given or measured) critical and mutation layers."""
        return []

    def span(self, config: SkipConfig, num_layers: int, decided_at: int, resume: int) -> tuple[int, int]:
        """Online "span" variants: the layers ``first..last`` skipped once the critical layer is confirmed at
        layer ``decided_at`` (``resume`` = the first mutation layer for skip1). Empty when ``first > last``."""
        return 1, 0

    @staticmethod
    def _critical(config: SkipConfig, critical: int) -> int:
        return config.critical_layer if config.critical_layer is not None else critical

    @staticmethod
    def _mutations(config: SkipConfig, mutations: tuple[int, ...]) -> tuple[int, ...]:
        # given (possibly empty: a profile that found none) beats measured
        return tuple(config.mutation_layers) if config.mutation_layers is not None else tuple(mutations)


class NonePolicy(VariantPolicy):
    name = "none"


class Skip1Policy(VariantPolicy):
    """skip.1: jump from the critical layer to the mutation layers (skip the stabilization stage)."""

    name = "skip1"
    online = "span"

    def layers_given(self, config):
        return config.critical_layer is not None and config.mutation_layers is not None

    def static_layers(self, config, num_layers, critical, mutations):
        c, mutation = self._critical(config, critical), self._mutations(config, mutations)
        return list(range(c + 1, mutation[0])) if c and mutation else []

    def span(self, config, num_layers, decided_at, resume):
        return decided_at + 1, resume - 1 if resume else 0


class Skip2Policy(VariantPolicy):
    """skip.2: skip only the mutation layers."""

    name = "skip2"
    online = "discard"

    def layers_given(self, config):
        return config.mutation_layers is not None

    def static_layers(self, config, num_layers, critical, mutations):
        return list(self._mutations(config, mutations))


class Skip3Policy(VariantPolicy):
    """skip.3: jump from the critical layer to the last ``keep_last`` layers."""

    name = "skip3"
    online = "span"

    def layers_given(self, config):
        return config.critical_layer is not None

    def static_layers(self, config, num_layers, critical, mutations):
        c = self._critical(config, critical)
        return list(range(c + 1, num_layers - config.keep_last + 1)) if c else []

    def span(self, config, num_layers, decided_at, resume):
        return decided_at + 1, num_layers - config.keep_last


class ExitPolicy(VariantPolicy):
    """Layer exit (an extension, not in the paper): the distribution comes from layer ``e``."""

    name = "exit"
    online = "exit"

    def layers_given(self, config):
        return config.exit_layer is not None or config.mutation_layers is not None

    def static_layers(self, config, num_layers, critical, mutations):
        if config.exit_layer is not None:
            e = config.exit_layer
        else:
            mutation = self._mutations(config, mutations)
            e = mutation[0] - 1 if mutation else num_layers
        return list(range(e + 1, num_layers + 1))


class LayersPolicy(VariantPolicy):
    """An explicit list of layers."""

    name = "layers"

    def static_layers(self, config, num_layers, critical, mutations):
        return list(config.layers)


POLICIES: dict[str, VariantPolicy] = {
    policy.name: policy for policy in (NonePolicy(), Skip1Policy(), Skip2Policy(), Skip3Policy(), ExitPolicy(), LayersPolicy())
}


def policy_for(config: SkipConfig) -> VariantPolicy:
    """The policy of ``config.variant``."""
    return POLICIES[config.variant]


def static_skip_set(config: SkipConfig, num_layers: int, critical: int = 0, mutations=()) -> list[int]:
    """The 1-based layers a static row skips (given layers first, else the measured ``critical`` / ``mutations``).

    At least one layer always runs: a set that would cover every layer keeps layer 1.
    """
    layers = policy_for(config).static_layers(config, num_layers, critical, tuple(mutations))
    if len(layers) >= num_layers:
        layers = [j for j in layers if j != 1]
    return layers
