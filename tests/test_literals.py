"""The string enums: each ``Literal`` of :mod:`lvlm_skip.config` is the one list of its values.

For every ``Literal`` there, the values the code validates against (the tuple a check reads, the
registry, a copy kept where a module must not import the configs, a command line's ``choices``) equal
its args (in any order), and where a check exists, it accepts each value and refuses one outside. A ``Literal`` added
to the configs without a row here fails :func:`test_every_literal_is_checked`.
"""

from __future__ import annotations

import argparse
import typing

import pytest

from lvlm_skip import config
from lvlm_skip.cli import build_parser
from lvlm_skip.config import DecoConfig, DetectionConfig, DolaConfig, SkipConfig


def _choices(command: str, option: str) -> tuple:
    """The ``choices`` of ``lvlm-skip COMMAND OPTION``."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return tuple(next(a for a in sub._actions if option in a.option_strings).choices)


def _variants():
    from lvlm_skip import variants

    return variants


def _without_auto(values) -> tuple:
    return tuple(v for v in values if v != "auto")


#: Literal name -> a function giving every tuple of values that the code validates against.
COPIES = {
    "Mode": lambda: [config.MODES, _variants().VARIANTS["skip1"].modes, _choices("amber", "--mode")],
    "Positions": lambda: [config.POSITIONS],
    "Decision": lambda: [config.DECISIONS],
    "KvFill": lambda: [config.KV_FILLS],
    "ReadoutName": lambda: [config.READOUTS, tuple(__import__("lvlm_skip.readout").readout.LENSES),
                            _choices("trace", "--readout"), _choices("profile", "--readout")],
    "CriticalRule": lambda: [config.CRITICAL_RULES],
    "MutationRule": lambda: [config.MUTATION_RULES],
    "VariantName": lambda: [tuple(_variants().VARIANTS)],
    "SkipVariantName": lambda: [_variants().SKIP_VARIANTS],
    "PeerName": lambda: [_variants().PEERS],
    "Need": lambda: [tuple({need for v in _variants().VARIANTS.values() for need in v.needs})],
    "DolaLayers": lambda: [config.DOLA_LAYER_BUCKETS],
    "Reduction": lambda: [__import__("lvlm_skip.divergence").divergence.REDUCTIONS, _choices("trace", "--reduction")],
    "FigureAxis": lambda: [__import__("lvlm_skip.figures").figures.AXES, _choices("trace", "--axis")],
    "Normalization": lambda: [__import__("lvlm_skip.figures").figures.NORMALIZATIONS, _choices("trace", "--normalize")],
    "LastState": lambda: [__import__("lvlm_skip.figures").figures.LAST_STATES, _choices("trace", "--last-state")],
    "TsneScaling": lambda: [__import__("lvlm_skip.figures").figures.SCALINGS, _choices("trace", "--tsne-scale")],
    "WordSplit": lambda: [__import__("lvlm_skip.inputs.builtin_models").inputs.builtin_models.WORD_SPLITS],
    "DataFormat": lambda: [__import__("lvlm_skip.profiles.measure").profiles.measure.DATA_FORMATS,
                           _without_auto(_choices("profile", "--format"))],
    "PopeSplit": lambda: [__import__("lvlm_skip.data.pope").data.pope.POPE_SPLITS,
                          __import__("lvlm_skip.scenes.pope").scenes.pope.POPE_STRATEGIES,
                          _without_auto(v for v in _choices("pope", "--split") if v != "all")],
    "AmberTaskName": lambda: [tuple(__import__("lvlm_skip.data.amber").data.amber.TASK_FILES), _choices("amber", "--task")],
    "LanguageBackendChoice": lambda: [_choices("amber", "--backend")],
    "SynonymTable": lambda: [__import__("lvlm_skip.benchmarks.caption.chair").benchmarks.caption.chair.SYNONYM_TABLES],
    "Closeness": lambda: [__import__("lvlm_skip.benchmarks.caption.task").benchmarks.caption.task.CLOSENESS],
    "SpeedStatistic": lambda: [__import__("lvlm_skip.speed.benchmark").speed.benchmark.STATISTICS,
                               _choices("speed", "--statistic")],
    "SpeedClock": lambda: [__import__("lvlm_skip.speed.benchmark").speed.benchmark.CLOCKS,
                           _without_auto(_choices("speed", "--clock"))],
}


def _literals() -> dict[str, tuple]:
    return {name: typing.get_args(value) for name, value in vars(config).items()
            if typing.get_origin(value) is typing.Literal}


def test_every_literal_is_checked():
    assert set(_literals()) == set(COPIES)


@pytest.mark.parametrize("name", sorted(COPIES))
def test_literal_args_equal_the_values_the_code_validates(name):
    args = _literals()[name]
    for values in COPIES[name]():
        values = tuple(values)
        assert sorted(values) == sorted(args) and len(set(values)) == len(values), f"{name}: {values} != {args}"


# -- the checks accept each value and refuse one outside -------------------------------------------------

OUTSIDE = "no-such-value"

#: Literal name -> a function that raises ValueError for a value it refuses.
CHECKS = {
    "Mode": lambda v: SkipConfig(variant="skip3", mode=v, critical_layer=2),
    "Positions": lambda v: SkipConfig(variant="layers", layers=(2,), positions=v),
    "Decision": lambda v: SkipConfig(variant="skip3", decide=v),
    "KvFill": lambda v: SkipConfig(variant="layers", layers=(2,), kv_fill=v),
    "ReadoutName": lambda v: SkipConfig(readout=v),
    "CriticalRule": lambda v: DetectionConfig(critical_rule=v),
    "MutationRule": lambda v: DetectionConfig(mutation_rule=v),
    "VariantName": lambda v: _variants().variant(v),
    "SkipVariantName": lambda v: _variants().skip_variant(v),
    "PeerName": lambda v: __import__("lvlm_skip.peers").peers.peer_config(v),
    "DolaLayers": lambda v: DolaConfig(layers=v),
    "Reduction": lambda v: __import__("lvlm_skip.divergence").divergence.check_reduction(v),
    "FigureAxis": lambda v: __import__("lvlm_skip.figures").figures.column_labels(4, axis=v),
    "WordSplit": lambda v: __import__("lvlm_skip.inputs.builtin_models").inputs.builtin_models.build_word_tokenizer(split=v),
    "SynonymTable": lambda v: __import__("lvlm_skip.benchmarks.caption.chair").benchmarks.caption.chair.load_vocabulary(v),
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_check_accepts_each_value_and_refuses_another(name):
    for value in _literals()[name]:
        CHECKS[name](value)
    with pytest.raises(ValueError):
        CHECKS[name](OUTSIDE)


def test_the_deco_layers_are_not_a_string_enum():
    """DeCo's window is a list of layers only: a DoLa bucket name is refused there."""
    with pytest.raises(ValueError):
        DecoConfig(layers="high")
