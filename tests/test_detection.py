"""Critical / mutation layer detection (1-based layers, d_j at index j - 1).

Unit tests on hand-made curves, then the acceptance targets on synthetic families with planted
layers (:mod:`synthetic_curves`; run with ``-s`` to see the rates).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic_curves import FAMILIES, make_curves, score

from lvlm_skip.detection import CausalLayerDetector, DetectionConfig, LayerDetection, detect_layers

L = 16
SHALLOW, PLATEAU = 1.0, 0.02


def _curve(drop: int, spikes: dict | None = None, d1: float = 5.0, last: float | None = None) -> torch.Tensor:
    """``d_1 = d1``, layers 2..drop-1 at SHALLOW, ``drop..L`` at PLATEAU, ``{layer: value}`` spikes."""
    d = torch.full((L,), PLATEAU)
    d[: drop - 1] = SHALLOW
    d[0] = d1
    for layer, value in (spikes or {}).items():
        d[layer - 1] = value
    if last is not None:
        d[-1] = last
    return d


def _single(d, top1_changed=None, config=None) -> tuple[int, list[int]]:
    found = detect_layers(d, top1_changed, config)
    return int(found.critical), found.mutation_layers()


def _noisy(curves: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return curves * torch.exp(sigma * torch.randn(curves.shape, generator=generator))


# -- the definitions on hand-made curves --------------------------------------------------------------


def test_sharp_drop_critical_exactly_at_the_drop():
    for drop in (5, 8, 12):
        assert _single(_curve(drop)) == (drop, [])


def test_gradual_drop_critical_at_the_first_low_layer():
    d = torch.tensor([5.0, 1.0, 1.2, 0.9, 1.1, 1.0, 0.6, 0.3, 0.15, 0.05, 0.03, 0.03, 0.02, 0.03, 0.02, 0.02])
    assert _single(d) == (9, [])  # 0.15: the first value under 0.2 x the shallow level (0.8, layers 2-8)


def test_no_drop_text_only_like():
    wobble = 0.3 + 0.05 * torch.sin(torch.arange(L, dtype=torch.float32))
    slow_decline = torch.linspace(0.5, 0.2, L)  # 2.5x over the whole depth: no drop
    for d in (torch.full((L,), 0.3), wobble, torch.linspace(0.1, 0.5, L), slow_decline):
        d = d.clone()
        d[0] = 3.0
        assert _single(d) == (0, [])


def test_a_single_dip_is_not_critical():
    d = _curve(10, spikes={5: 0.01})  # one low layer in the shallow stage, high again after it
    assert _single(d) == (10, [])


def test_the_first_layer_does_not_set_the_level():
    """The curve that fooled the peak-based detector: a huge d_1, every later change far below it."""
    d = torch.tensor([0.45, 0.12, 0.09, 0.14, 0.1, 0.11, 0.08, 0.13, 0.1, 0.004, 0.003, 0.005, 0.004, 0.003, 0.004, 0.2])
    assert _single(d) == (10, [])
    # counting d_1 (first_layer=1) makes it part of the shallow level, still robustly
    assert _single(d, config=DetectionConfig(first_layer=1)) == (10, [])


def test_min_shallow_layers_bounds_the_earliest_critical_layer():
    d = _curve(3)  # drops at 3: only d_2 is a shallow value before it
    assert _single(d, config=DetectionConfig(min_shallow_layers=1)) == (3, [])
    assert _single(d)[0] >= 5  # by default layers 2, 3, 4 define the shallow level first
    assert _single(_curve(5)) == (5, [])


def test_one_spike_flags_the_spike_layer_only():
    assert _single(_curve(6, spikes={12: 5 * PLATEAU})) == (6, [12])


def test_spike_below_spike_factor_is_ignored():
    assert _single(_curve(6, spikes={12: 3.5 * PLATEAU})) == (6, [])


def test_several_spikes_and_adjacent_spikes():
    critical, mutations = _single(_curve(6, spikes={9: 0.3, 11: 0.1, 12: 2.0, 14: 0.09}))
    assert critical == 6
    assert mutations == [9, 11, 12, 14]


def test_spike_right_after_confirmation():
    # c = 6 is confirmed at 7 (patience 2): layer 8 is the first that can mutate
    assert _single(_curve(6, spikes={8: 0.5})) == (6, [8])


def test_spike_during_confirmation_breaks_the_run():
    # a spike at 7 breaks the low run started at 6: the plateau restarts at 8, 7 is no mutation
    assert _single(_curve(6, spikes={7: 0.9})) == (8, [])


def test_last_layer_change_is_not_a_mutation_by_default():
    d = _curve(6, last=1.5)
    assert _single(d) == (6, [])
    assert _single(d, config=DetectionConfig(last_layer_mutations=True)) == (6, [L])


def test_noise_sharp_drop_within_one_layer_and_no_false_spikes():
    curves = _noisy(torch.stack([_curve(drop) for drop in (6, 8, 10, 12)] * 25), sigma=0.3, seed=0)
    found = detect_layers(curves)
    planted = torch.tensor([6, 8, 10, 12] * 25)
    assert ((found.critical - planted).abs() <= 1).all()
    assert found.mutation.float().mean() < 0.005


def test_scale_invariance():
    curves = make_curves("llava7b", 300, seed=5).jsd
    reference = detect_layers(curves)
    for factor in (2.0**-30, 2.0**-7, 2.0**12):  # exact in floating point
        scaled = detect_layers(curves * factor)
        assert torch.equal(scaled.critical, reference.critical) and torch.equal(scaled.mutation, reference.mutation)
    for factor in (1e-6, 3.7e-3, 13.0):  # rounding may move a value across a threshold, rarely
        scaled = detect_layers(curves * factor)
        assert (scaled.critical == reference.critical).float().mean() >= 0.99
        assert (scaled.mutation == reference.mutation).float().mean() >= 0.999


def test_exact_zeros_on_the_plateau_do_not_make_spikes():
    d = _curve(6, spikes={10: 0.0, 11: 0.0})
    d[11:] = PLATEAU * torch.tensor([1.2, 0.9, 1.1, 1.0, 1.0])
    assert _single(d) == (6, [])


# -- causality, partial observation, batches, devices ----------------------------------------------


def _confirmation_layers(curves: torch.Tensor, config: DetectionConfig) -> torch.Tensor:
    """`(rows,)` the layer at which each row's critical layer was confirmed (0 = never)."""
    detector = CausalLayerDetector(curves.shape[0], config, num_layers=curves.shape[-1])
    confirmed_at = torch.zeros(curves.shape[0], dtype=torch.int64)
    for j in range(1, curves.shape[-1] + 1):
        detector.observe(j, curves[:, j - 1])
        confirmed_at = torch.where(detector.confirmed & (confirmed_at == 0), j, confirmed_at)
    return confirmed_at


def test_causal_future_layers_never_change_earlier_detections():
    config = DetectionConfig(last_layer_mutations=True)
    curves = make_curves("llava7b", 200, seed=6).jsd
    generator = torch.Generator().manual_seed(7)
    reference = detect_layers(curves, config=config)
    confirmed_at = _confirmation_layers(curves, config)
    for j in (4, 12, 18, 24, 31):
        changed = curves.clone()
        changed[:, j:] = torch.rand(changed[:, j:].shape, generator=generator) ** 4  # anything at all
        found = detect_layers(changed, config=config)
        assert torch.equal(found.mutation[:, :j], reference.mutation[:, :j])
        decided = (confirmed_at > 0) & (confirmed_at <= j)
        changed_at = _confirmation_layers(changed, config)
        assert torch.equal((changed_at > 0) & (changed_at <= j), decided)
        assert torch.equal(found.critical[decided], reference.critical[decided])


def test_late_window_and_gaps_equal_detect_layers_on_the_nan_masked_curve():
    curves = make_curves("llava7b", 300, seed=8).jsd
    num_layers = curves.shape[-1]
    generator = torch.Generator().manual_seed(9)
    for window_start in (2, 8, 12):
        masked = curves.clone()
        masked[:, : window_start - 1] = float("nan")
        # some rows also miss some layers (skipped there): NaN per row
        gaps = torch.rand(masked.shape, generator=generator) < 0.1
        masked[gaps] = float("nan")
        offline = detect_layers(masked)
        detector = CausalLayerDetector(curves.shape[0], DetectionConfig(), num_layers=num_layers)
        online = torch.zeros_like(offline.mutation)
        for j in range(window_start, num_layers + 1):  # layers before the window are never observed
            online[:, j - 1] = detector.observe(j, masked[:, j - 1])
        assert torch.equal(detector.critical, offline.critical)
        assert torch.equal(online, offline.mutation)
        assert not offline.mutation[:, : window_start - 1].any()
        assert offline.critical.gt(0).float().mean() > 0.8


def test_gaps_do_not_break_a_run_and_critical_is_the_first_observed_low_layer():
    d = _curve(8)
    d[7] = float("nan")  # layer 8 (the first low one) not observed
    assert _single(d) == (9, [])
    d = _curve(8, spikes={12: 0.5})
    d[8] = float("nan")  # layer 9 missing inside the run 8, (9), 10
    assert _single(d) == (8, [12])


def test_batch_rows_are_independent_and_any_leading_shape():
    curves = make_curves("llava7b", 24, seed=10).jsd
    changed = torch.rand(curves.shape, generator=torch.Generator().manual_seed(11)) < 0.2
    config = DetectionConfig(mutation_rule="spike_or_top1")
    found = detect_layers(curves.reshape(2, 3, 4, -1), changed.reshape(2, 3, 4, -1), config)
    assert isinstance(found, LayerDetection)
    assert found.critical.shape == (2, 3, 4) and found.mutation.shape == (2, 3, 4, 32)
    for row in range(24):
        alone = detect_layers(curves[row], changed[row], config)
        assert alone.critical == found.critical.reshape(-1)[row]
        assert torch.equal(alone.mutation, found.mutation.reshape(24, -1)[row])


def test_float16_and_numpy_inputs():
    curves = make_curves("llava7b", 200, seed=12).jsd
    half = curves.half()
    reference = detect_layers(half.float())
    for given in (half, half.float().numpy(), half.numpy()):
        found = detect_layers(given)
        assert found.critical.dtype == torch.int64 and found.mutation.dtype == torch.bool
        assert torch.equal(found.critical, reference.critical) and torch.equal(found.mutation, reference.mutation)


def test_each_input_is_copied_to_the_host_once(monkeypatch):
    """The state is a few scalars per row: a whole curve costs one device-to-host copy, not one op per layer."""
    curves = make_curves("llava7b", 8, seed=13)
    changed = torch.rand(curves.jsd.shape, generator=torch.Generator().manual_seed(14)) < 0.2
    config = DetectionConfig(mutation_rule="spike_or_top1", critical_rule="jsd_and_top1")
    copies = []
    tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: copies.append(tuple(self.shape)) or tolist(self))
    for name in ("item", "numpy", "__bool__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("another host sync")))
    found = detect_layers(curves.jsd, changed, config)
    assert copies == [(8, 32), (8, 32)]
    copies.clear()
    detector = CausalLayerDetector(8, config, num_layers=32)
    flags = [detector.observe(j, curves.jsd[:, j - 1], changed[:, j - 1]) for j in range(1, 33)]
    assert copies == [(8,), (8,)] * 32
    monkeypatch.undo()
    assert all(isinstance(f, torch.Tensor) and f.shape == (8,) and f.dtype == torch.bool for f in flags)
    assert torch.equal(torch.stack(flags, dim=-1), found.mutation) and torch.equal(detector.critical, found.critical)
    assert detector.critical.dtype == torch.int64 and detector.confirmed.dtype == torch.bool and detector.confirmed.any()


def test_detector_needs_num_layers_unless_the_last_layer_counts():
    with pytest.raises(ValueError, match="num_layers"):
        CausalLayerDetector(2, DetectionConfig())
    CausalLayerDetector(2, DetectionConfig(last_layer_mutations=True))


# -- rules using the top-1 token ----------------------------------------------------------------------


def test_top1_mutation_rules():
    d = _curve(6, spikes={12: 0.5})
    changed = torch.zeros(L, dtype=torch.bool)
    changed[[2, 13]] = True  # layer 3 (before the critical layer) and layer 14
    assert _single(d, changed, DetectionConfig(mutation_rule="top1"))[1] == [14]
    assert _single(d, changed, DetectionConfig(mutation_rule="spike_or_top1"))[1] == [12, 14]
    assert _single(d, changed, DetectionConfig(mutation_rule="spike_and_top1"))[1] == []
    changed[11] = True
    assert _single(d, changed, DetectionConfig(mutation_rule="spike_and_top1"))[1] == [12]
    with pytest.raises(ValueError, match="top1_changed"):
        detect_layers(d, None, DetectionConfig(mutation_rule="top1"))


def test_top1_critical_rules():
    d = _curve(6)
    changed = torch.ones(L, dtype=torch.bool)
    changed[7:] = False  # the predicted token stops changing at layer 8
    assert _single(d, changed, DetectionConfig(critical_rule="jsd_and_top1")) == (8, [])
    assert _single(torch.full((L,), 0.3), changed, DetectionConfig(critical_rule="top1"))[0] == 8
    with pytest.raises(ValueError, match="top1_changed"):
        detect_layers(d, None, DetectionConfig(critical_rule="top1"))


def test_min_mutation_layer():
    d = _curve(6, spikes={10: 0.5, 14: 0.5})
    assert _single(d, config=DetectionConfig(min_mutation_layer=12))[1] == [14]


def test_first_mutation_and_mutation_layers():
    found = detect_layers(torch.stack([_curve(6, spikes={11: 0.5, 14: 0.5}), _curve(6)]))
    assert found.first_mutation().tolist() == [11, 0]
    assert found.mutation_layers(0) == [11, 14]
    assert found.mutation_layers(1) == []


# -- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [
        ({"rel_low": 0.0}, "rel_low"),
        ({"rel_low": 1.0}, "rel_low"),
        ({"patience": 0}, "patience"),
        ({"patience": 1.5}, "patience"),
        ({"first_layer": 0}, "first_layer"),
        ({"min_shallow_layers": 0}, "min_shallow_layers"),
        ({"spike_factor": 0.5}, "spike_factor"),
        ({"clip_factor": 1.0}, "clip_factor"),
        ({"critical_rule": "peak"}, "critical_rule"),
        ({"mutation_rule": "jump"}, "mutation_rule"),
        ({"min_mutation_layer": -1}, "min_mutation_layer"),
        ({"last_layer_mutations": "yes"}, "last_layer_mutations"),
    ],
)
def test_config_validation(options, message):
    with pytest.raises(ValueError, match=message):
        DetectionConfig(**options)


def test_config_from_dict():
    assert DetectionConfig.from_dict({"patience": 3}) == DetectionConfig(patience=3)
    with pytest.raises(ValueError, match=r"unknown detection option\(s\) \['patiense'\].*known"):
        DetectionConfig.from_dict({"patiense": 2})
    with pytest.raises(Exception):
        DetectionConfig().patience = 4  # frozen


def test_never_config_never_acts():
    curves = make_curves("llava7b", 500, seed=15).jsd
    found = detect_layers(curves, config=DetectionConfig.never())
    assert not found.critical.any() and not found.mutation.any()


# -- acceptance on synthetic families ------------------------------------------------------------------


@pytest.mark.parametrize("family", [name for name in FAMILIES if name != "flat"])
def test_synthetic_family_targets(family):
    curves = make_curves(family, 1000, seed=100)
    found = detect_layers(curves.jsd)
    result = score(curves, found.critical, found.mutation)
    print(f"\n{family}: {result.line()}")
    assert result.critical_within_1 >= 0.95
    assert result.spike_recall >= 0.90
    assert result.spike_precision >= 0.90
    assert result.false_critical <= 0.05


def test_synthetic_no_drop_curves_have_no_critical_layer():
    curves = make_curves("flat", 1000, seed=101)
    found = detect_layers(curves.jsd)
    result = score(curves, found.critical, found.mutation)
    print(f"\nflat: {result.line()}")
    assert result.false_critical <= 0.02


def test_synthetic_generator_is_seeded_and_plants_what_it_says():
    a, b = make_curves("llava7b", 50, seed=1), make_curves("llava7b", 50, seed=1)
    assert torch.equal(a.jsd, b.jsd) and torch.equal(a.critical, b.critical) and torch.equal(a.spikes, b.spikes)
    big = make_curves("llava7b", 2000, seed=2)
    drop = big.critical > 0
    assert big.critical[drop].min() >= 14 and big.critical[drop].max() <= 21
    assert 0.05 < (~drop).float().mean() < 0.15
    rows, cols = big.spikes.nonzero(as_tuple=True)
    assert (cols + 1 >= big.critical[rows] + 2).all() and (cols + 1 <= 31).all()
    assert np.isin(big.spikes.sum(-1).numpy(), [0, 1, 2]).all()
    # planted spikes are at least 5x the plateau's typical value
    plateau = torch.where((torch.arange(1, 33) >= big.critical[:, None]) & ~big.spikes & drop[:, None], big.jsd, torch.nan)
    plateau = plateau[:, :-1].nanmedian(dim=-1).values
    assert (big.jsd[rows, cols] >= 3 * plateau[rows]).float().mean() > 0.98
    # d_1 dominates, and many curves end with a large last-layer change
    assert (big.jsd[:, 0] > big.jsd[:, 1:].median(-1).values).all()
    assert (big.jsd[drop, -1] > 4 * plateau[drop]).float().mean() > 0.5
