"""Critical / mutation layer detection on synthetic JSD curves (1-based layers, d_j at index j - 1)."""

from __future__ import annotations

import pytest
import torch

from lvlm_skip.detection import CausalLayerDetector, DetectionConfig, LayerDetection, detect_layers

L = 16


def _curve(high: int, high_value: float = 1.0, low_value: float = 0.01, spikes: dict | None = None) -> torch.Tensor:
    """Layers 1..high at ``high_value``, the rest at ``low_value``, with ``{layer: value}`` spikes."""
    d = torch.full((L,), low_value)
    d[:high] = high_value
    for layer, value in (spikes or {}).items():
        d[layer - 1] = value
    return d


def _single(d, top1_changed=None, config=None) -> tuple[int, list[int]]:
    found = detect_layers(d, top1_changed, config)
    return int(found.critical), found.mutation_layers()


def test_sharp_drop_critical_exactly_at_the_drop():
    for drop in (3, 6, 10):
        critical, mutations = _single(_curve(high=drop - 1))
        assert critical == drop
        assert mutations == []


def test_gradual_drop():
    d = torch.tensor([1.0, 0.9, 0.75, 0.6, 0.45, 0.3, 0.22, 0.15, 0.1, 0.07, 0.05, 0.05, 0.04, 0.04, 0.04, 0.04])
    critical, mutations = _single(d)
    assert critical == 7  # the first layer at most rel_low (0.25) x the peak, and staying low
    assert mutations == []


def test_no_drop_text_only_like():
    wobble = 0.3 + 0.05 * torch.sin(torch.arange(L, dtype=torch.float32))
    for d in (torch.full((L,), 0.3), wobble, torch.linspace(0.1, 0.5, L)):
        critical, mutations = _single(d)
        assert critical == 0
        assert mutations == []


def test_drop_that_does_not_stay_low_is_not_critical():
    d = _curve(high=4, spikes={6: 1.0})  # low at 5 only, then high again: no run of 3 low layers there
    assert _single(d)[0] == 7


def test_one_spike_flags_the_spike_layer_only():
    critical, mutations = _single(_curve(high=5, spikes={12: 0.5}))
    assert critical == 6
    assert mutations == [12]


def test_spikes_below_the_relative_floor_are_ignored():
    # 0.2 is 20x the stable baseline but below rel_low x peak = 0.25
    assert _single(_curve(high=5, spikes={12: 0.2}))[1] == []


def test_several_spikes():
    critical, mutations = _single(_curve(high=5, spikes={11: 0.6, 13: 0.4, 15: 2.0}))
    assert critical == 6
    assert mutations == [11, 13, 15]


def test_spike_during_confirmation_is_not_a_mutation():
    # a spike at 7 breaks the low run started at 6: critical moves to 8, and 7 is no mutation
    critical, mutations = _single(_curve(high=5, spikes={7: 0.9}))
    assert critical == 8
    assert mutations == []


def test_noisy_sharp_drop_within_one_layer():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        noise = torch.exp(0.25 * torch.randn(L, generator=generator))
        critical, mutations = _single(_curve(high=7, low_value=0.02) * noise)
        assert abs(critical - 8) <= 1
        assert mutations == []


def test_top1_rules():
    d = _curve(high=5, spikes={12: 0.5})
    changed = torch.zeros(L, dtype=torch.bool)
    changed[[2, 13]] = True  # layer 3 (before the critical layer) and layer 14
    assert _single(d, changed, DetectionConfig(mutation_rule="top1"))[1] == [14]
    assert _single(d, changed, DetectionConfig(mutation_rule="spike_or_top1"))[1] == [12, 14]
    assert _single(d, changed, DetectionConfig(mutation_rule="spike_and_top1"))[1] == []
    changed[11] = True
    assert _single(d, changed, DetectionConfig(mutation_rule="spike_and_top1"))[1] == [12]
    with pytest.raises(ValueError, match="top1_changed"):
        detect_layers(d, None, DetectionConfig(mutation_rule="top1"))


def test_min_mutation_layer():
    d = _curve(high=5, spikes={10: 0.5, 14: 0.5})
    assert _single(d, config=DetectionConfig(min_mutation_layer=12))[1] == [14]


def test_batched_detect_layers_equals_per_row_detector():
    generator = torch.Generator().manual_seed(3)
    base = torch.stack([_curve(high=h, spikes={h + 6: 0.5}) for h in (3, 5, 7, 9)] + [torch.full((L,), 0.3)] * 2)
    curves = (base * torch.exp(0.5 * torch.randn(base.shape, generator=generator))).reshape(2, 3, L)
    changed = torch.rand(2, 3, L, generator=generator) < 0.2
    config = DetectionConfig(mutation_rule="spike_or_top1")
    found = detect_layers(curves, changed, config)
    assert isinstance(found, LayerDetection)
    assert found.critical.shape == (2, 3) and found.mutation.shape == (2, 3, L)
    for index in range(6):
        row, col = divmod(index, 3)
        detector = CausalLayerDetector(1, config)
        flags = [bool(detector.observe(j, curves[row, col, j - 1 : j], changed[row, col, j - 1 : j])) for j in range(1, L + 1)]
        assert detector.critical.item() == found.critical[row, col].item()
        assert flags == found.mutation[row, col].tolist()
    assert found.critical.reshape(-1)[:4].gt(0).all()


def test_first_mutation_and_mutation_layers():
    found = detect_layers(torch.stack([_curve(high=5, spikes={11: 0.5, 14: 0.5}), _curve(high=5)]))
    assert found.first_mutation().tolist() == [11, 0]
    assert found.mutation_layers(0) == [11, 14]
    assert found.mutation_layers(1) == []


@pytest.mark.parametrize(
    "options, message",
    [
        ({"rel_low": 0.0}, "rel_low"),
        ({"rel_low": 1.0}, "rel_low"),
        ({"patience": 0}, "patience"),
        ({"patience": 1.5}, "patience"),
        ({"min_critical_layer": 0}, "min_critical_layer"),
        ({"spike_factor": 0.5}, "spike_factor"),
        ({"mutation_rule": "jump"}, "mutation_rule"),
        ({"min_mutation_layer": -1}, "min_mutation_layer"),
    ],
)
def test_config_validation(options, message):
    with pytest.raises(ValueError, match=message):
        DetectionConfig(**options)


def test_config_from_dict():
    assert DetectionConfig.from_dict({"patience": 2}) == DetectionConfig(patience=2)
    with pytest.raises(ValueError, match=r"unknown detection option\(s\) \['patiense'\].*known"):
        DetectionConfig.from_dict({"patiense": 2})
    with pytest.raises(Exception):
        DetectionConfig().patience = 4  # frozen
