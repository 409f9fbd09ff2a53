"""Every figure function and option on plain synthetic traces (no model), and the helpers' definitions."""

from __future__ import annotations

import numpy as np
import pytest

from lvlm_skip import Trace, figures
from lvlm_skip.figures.heatmap import heatmap_matrix

LAYERS, STEPS, HIDDEN = 6, 5, 8


def synthetic_trace(steps=STEPS, layers=LAYERS, hidden=HIDDEN, keep_hidden=True, batch=1, reduction="sum", seed=0) -> Trace:
    """A trace with random arrays of the right shapes; competitors 10 and 11 at every step, watch 'red' / 'black'."""
    rng = np.random.default_rng(seed)
    mutation = np.zeros((batch, steps, layers), dtype=bool)
    mutation[:, 1, layers - 2] = True
    competitor_ids = np.full((batch, steps, 3), -1)
    competitor_ids[..., :2] = [10, 11]
    competitor_probs = np.full((batch, steps, layers, 3), np.nan)
    competitor_probs[..., :2] = rng.random((batch, steps, layers, 2))
    return Trace(
        token_ids=np.tile(np.arange(steps), (batch, 1)), lengths=np.full(batch, steps),
        tokens=[[f"w{t}" for t in range(steps)] for _ in range(batch)], texts=[f"answer{b % 2} w1" for b in range(batch)],
        token_probs=rng.random((batch, steps, layers)), topk_ids=np.zeros((batch, steps, layers, 2), dtype=np.int64),
        topk_probs=rng.random((batch, steps, layers, 2)), watch_probs=rng.random((batch, steps, layers, 2)),
        jsd=rng.random((batch, steps, layers)), top1_changed=np.zeros((batch, steps, layers), dtype=bool),
        critical=np.tile(np.array([2, 0, 3, 2, 2, 2][:steps]), (batch, 1)), mutation=mutation,
        watch_tokens=["red", "black"], watch_token_ids=[0, 1],
        meta={"num_layers": layers, "first_layer": 1, "readout": "raw", "reduction": reduction},
        hidden=rng.standard_normal((batch, steps, layers + 1, hidden)).astype("float16") if keep_hidden else None,
        hidden_final=rng.standard_normal((batch, steps, hidden)).astype("float16") if keep_hidden else None,
        competitor_ids=competitor_ids, competitor_probs=competitor_probs, window_start=np.full((batch, steps), 3),
        token_text={0: "red", 1: "black", 10: " camera", 11: " water"},
    )


def _written(paths) -> bool:
    return [p.suffix for p in paths] == [".png", ".svg"] and all(p.is_file() and p.stat().st_size > 0 for p in paths)


# ------------------------------------------------------------------------------------ helpers


def test_max_abs_scale_is_sklearns_max_abs_scaler():
    from sklearn.preprocessing import MaxAbsScaler

    values = np.random.default_rng(0).standard_normal((7, 4)) * [1, 10, 0.1, 0]
    np.testing.assert_allclose(figures.max_abs_scale(values), MaxAbsScaler().fit_transform(values))
    assert np.abs(figures.max_abs_scale(values)[:, :3]).max(axis=0).tolist() == [1.0, 1.0, 1.0]


def test_heatmap_matrix_normalizations():
    trace = synthetic_trace()
    absolute = heatmap_matrix(trace, normalize="none")
    np.testing.assert_array_equal(absolute, trace.jsd[0])
    scaled = heatmap_matrix(trace, normalize="layer", max_tokens=3)
    np.testing.assert_allclose(scaled, trace.jsd[0, :3] / trace.jsd[0, :3].max(axis=0))
    with pytest.raises(ValueError, match="normalize"):
        heatmap_matrix(trace, normalize="global")


def test_column_labels_paper_axis_is_shifted_by_one():
    np.testing.assert_array_equal(figures.column_labels(4, "layer"), [1, 2, 3, 4])
    # the paper's column i is our d_{i+1}: their "18" is our layer 19
    np.testing.assert_array_equal(figures.column_labels(32, "paper")[18], 18)
    assert figures.column_labels(32, "layer")[18] == 19
    with pytest.raises(ValueError, match="axis"):
        figures.column_labels(4, "depth")


@pytest.mark.parametrize("num_layers, critical, expected", [
    (32, 18, [[1, 2], list(range(3, 19)), list(range(19, 32)), [32]]),  # the authors' tsne.py: 2, 16, 13, 1
    (32, 19, [[1, 2], list(range(3, 20)), list(range(20, 32)), [32]]),  # combined_tsne.py: 2, 17, 12, 1
    (6, 2, [[1, 2], [3, 4, 5], [6]]),  # c = 2: no 3..c group
    (6, 9, [[1, 2], [3, 4, 5], [6]]),  # c clamped to L - 1
    (2, 5, [[1, 2]]),
])
def test_layer_groups(num_layers, critical, expected):
    groups = figures.layer_groups(num_layers, critical)
    assert [g.tolist() for _, g in groups] == expected
    assert sorted(j for _, g in groups for j in g) == list(range(1, num_layers + 1))


def test_dominant_critical():
    assert figures.dominant_critical(np.array([[2, 0, 3, 3, 2, 5]])) == 2  # tie 2/3 -> the shallower
    assert figures.dominant_critical(np.array([0, 0])) == 0


def test_layer_features_last_state():
    trace = synthetic_trace()
    raw = figures.layer_features(trace, "raw")
    normed = figures.layer_features(trace, "normed")
    assert raw.shape == (1, STEPS, LAYERS, HIDDEN)
    np.testing.assert_array_equal(raw, trace.hidden[:, :, 1:].astype(np.float32))
    np.testing.assert_array_equal(normed[:, :, :-1], raw[:, :, :-1])
    np.testing.assert_array_equal(normed[:, :, -1], trace.hidden_final.astype(np.float32))
    with pytest.raises(ValueError, match="keep_hidden"):
        figures.layer_features(synthetic_trace(keep_hidden=False))


def test_trace_probabilities_lookup():
    trace = synthetic_trace()
    np.testing.assert_array_equal(trace.probabilities("red", 2), trace.watch_probs[0, 2, :, 0])
    np.testing.assert_array_equal(trace.probabilities("water", 2), trace.competitor_probs[0, 2, :, 1])
    np.testing.assert_array_equal(trace.probabilities(10, 2), trace.competitor_probs[0, 2, :, 0])
    with pytest.raises(KeyError, match="'dog' was not recorded at step 2"):
        trace.probabilities("dog", 2)


# ------------------------------------------------------------------------------------ figures


def test_token_probabilities(tmp_path):
    trace = synthetic_trace()
    assert _written(figures.plot_token_probabilities(trace, tmp_path / "fig2.png", tokens=[0, 2], highlight_layer=3))
    assert _written(figures.plot_token_probabilities(trace, tmp_path / "all", ncols=2))
    old = synthetic_trace()
    old.competitor_ids = old.competitor_probs = old.window_start = None  # a trace saved before competitors
    assert _written(figures.plot_token_probabilities(old, tmp_path / "old"))
    with pytest.raises(ValueError, match="tokens"):
        figures.plot_token_probabilities(trace, tmp_path / "nope", tokens=[9])
    with pytest.raises(ValueError, match="row"):
        figures.plot_token_probabilities(trace, tmp_path / "nope", row=1)


def test_contrasts(tmp_path):
    trace = synthetic_trace()
    assert _written(figures.plot_contrasts(trace, tmp_path / "fig3", [(1, "camera", "water"), (2, "black", "red")]))
    with pytest.raises(ValueError, match="not recorded"):
        figures.plot_contrasts(trace, tmp_path / "nope", [(1, "camera", "dog")])
    with pytest.raises(ValueError, match="out of range"):
        figures.plot_contrasts(trace, tmp_path / "nope", [(7, "camera", "water")])
    with pytest.raises(ValueError, match="empty"):
        figures.plot_contrasts(trace, tmp_path / "nope", [])


@pytest.mark.parametrize("normalize, axis, annotate, reduction", [
    ("none", "layer", False, "sum"), ("layer", "paper", True, "paper"), ("layer", "layer", False, "sum"),
])
def test_heatmap_options(tmp_path, normalize, axis, annotate, reduction):
    trace = synthetic_trace(reduction=reduction)
    paths = figures.plot_jsd_heatmap(trace, tmp_path / "fig4", highlight_layer=2, normalize=normalize, axis=axis,
                                     annotate=annotate, cmap="Purples")
    assert _written(paths)
    with pytest.raises(ValueError, match="axis"):
        figures.plot_jsd_heatmap(trace, tmp_path / "nope", axis="depth")


def test_jsd_comparison_and_curves(tmp_path):
    lvlm, text_only = synthetic_trace(), synthetic_trace(steps=3, seed=1)
    assert _written(figures.plot_jsd_comparison([lvlm, text_only], ["LVLM", "text only"], tmp_path / "control", axis="paper"))
    assert _written(figures.plot_jsd_comparison([lvlm, text_only], ["a", "b"], tmp_path / "scaled", normalize="layer"))
    curves = {"images": np.random.default_rng(0).random((4, LAYERS)), "text only": np.random.default_rng(1).random(LAYERS)}
    assert _written(figures.plot_jsd_curves(curves, tmp_path / "curves", axis="paper", title="step 0"))
    with pytest.raises(ValueError, match="one title"):
        figures.plot_jsd_comparison([lvlm], ["a", "b"], tmp_path / "nope")
    assert _written(figures.plot_jsd_comparison([lvlm, synthetic_trace(layers=4)], ["6 layers", "4 layers"], tmp_path / "depths"))


@pytest.mark.parametrize("scale, last_state, paths", [("none", "raw", True), ("maxabs", "normed", False)])
def test_tsne_tokens(tmp_path, scale, last_state, paths):
    trace = synthetic_trace()
    assert _written(figures.plot_tsne_tokens(trace, tmp_path / "fig6", scale=scale, last_state=last_state, paths=paths))
    assert _written(figures.plot_tsne_tokens(trace, tmp_path / "given", critical=4))


def test_tsne_tokens_errors(tmp_path):
    with pytest.raises(ValueError, match="keep_hidden"):
        figures.plot_tsne_tokens(synthetic_trace(keep_hidden=False), tmp_path / "nope")
    with pytest.raises(ValueError, match="scale"):
        figures.plot_tsne_tokens(synthetic_trace(), tmp_path / "nope", scale="standard")
    with pytest.raises(ValueError, match="last_state"):
        figures.plot_tsne_tokens(synthetic_trace(), tmp_path / "nope", last_state="post")


def test_tsne_images(tmp_path):
    trace = synthetic_trace(batch=4, steps=2)
    assert figures.tsne.answer_labels(trace) == ["answer0", "answer1", "answer0", "answer1"]
    assert _written(figures.plot_tsne_images(trace, tmp_path / "fig7"))
    assert _written(figures.plot_tsne_images(trace, tmp_path / "paper", scale="maxabs", last_state="normed", paths=False,
                                             labels=["a", "b", "c", "d"], step=1))
    with pytest.raises(ValueError, match="labels"):
        figures.plot_tsne_images(trace, tmp_path / "nope", labels=["a"])
    with pytest.raises(ValueError, match="step"):
        figures.plot_tsne_images(trace, tmp_path / "nope", step=2)


def test_tsne_perplexity_fallback_for_few_points():
    points = np.random.default_rng(0).standard_normal((12, 5))
    _, used = figures.tsne.tsne_2d(points, perplexity=40.0)
    assert used == pytest.approx(11 / 3)
    _, used = figures.tsne.tsne_2d(np.random.default_rng(0).standard_normal((130, 5)), perplexity=40.0)
    assert used == 40.0
