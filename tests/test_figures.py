"""Every figure function and option on plain synthetic traces (no model), and the helpers' definitions."""

from __future__ import annotations

import matplotlib.colors
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
#
# Every figure test reads what was drawn from the returned FigureFiles' figure: the curves (their
# labels and data), the marks at the critical and mutation layers, the heatmap's values, the
# t-SNE points per layer group, titles and axis labels. Moving a mark or dropping a curve fails.


def _curves(ax) -> dict:
    """Label -> Line2D of the labelled data curves of ``ax`` (vertical marks and thin unlabelled lines left out)."""
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_") and not _is_vertical(line)}


def _is_vertical(line) -> bool:
    x, y = np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)
    return x.size == 2 and x[0] == x[1] and y.tolist() == [0.0, 1.0]


def _vertical_marks(ax) -> list[tuple[float, str]]:
    """``(x, label)`` of the vertical lines (``axvline``) of ``ax``, by x."""
    return sorted((float(line.get_xdata()[0]), line.get_label()) for line in ax.get_lines() if _is_vertical(line))


def _legend_texts(legend) -> list[str]:
    return [text.get_text() for text in legend.get_texts()]


def _recorded(trace, step):
    """The curves Fig. 2 must draw at ``step``: competitors filled, watch tokens reaching 0.02 dashed."""
    names = {" camera": trace.competitor_probs[0, step, :, 0], " water": trace.competitor_probs[0, step, :, 1]}
    for w, name in enumerate(trace.watch_tokens):
        if trace.watch_probs[0, step, :, w].max() >= 0.02:
            names[f"{name} (watch)"] = trace.watch_probs[0, step, :, w]
    return names


def test_token_probabilities(tmp_path):
    trace = synthetic_trace()
    trace.watch_probs[0, 2, :, 1] = 0.01  # 'black' under WATCH_MIN_PROBABILITY at step 2: not drawn there
    files = figures.plot_token_probabilities(trace, tmp_path / "fig2.png", tokens=[0, 2], highlight_layer=3)
    assert _written(files)
    panels = [ax for ax in files.figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["0: w0", "2: w2"]
    for ax, step in zip(panels, [0, 2]):
        expected, curves = _recorded(trace, step), _curves(ax)
        assert sorted(curves) == sorted(expected)
        for name, probs in expected.items():
            np.testing.assert_array_equal(curves[name].get_xdata(), np.arange(1, LAYERS + 1))
            np.testing.assert_allclose(curves[name].get_ydata(), probs)
            assert curves[name].get_linestyle() == ("--" if "(watch)" in name else "-")
        assert len(ax.collections) == 2  # the competitors' filled areas
        assert _legend_texts(ax.get_legend()) == list(curves)
        assert [x for x, _ in _vertical_marks(ax)] == [3.0]  # highlight_layer, the only vertical mark
        (band,) = ax.patches  # the late window, window_start = 3 .. L
        assert (band.get_x(), band.get_x() + band.get_width()) == (3, LAYERS)
        assert ax.get_ylim() == (0, 1) and ax.get_xlabel() == "layer"
    assert "black (watch)" not in _curves(panels[1]) and panels[0].get_ylabel() == "probability"
    assert "raw readout" in files.figure.get_suptitle()
    six = figures.plot_token_probabilities(trace, tmp_path / "all", ncols=2)
    assert _written(six)
    shown = [ax for ax in six.figure.axes if ax.get_visible()]
    assert len(shown) == STEPS and len(six.figure.axes) == 6  # a 3 x 2 grid, its last panel hidden
    assert [ax.get_title() for ax in shown] == [f"{t}: w{t}" for t in range(STEPS)]
    old = synthetic_trace()
    old.competitor_ids = old.competitor_probs = old.window_start = None  # a trace saved before competitors
    files = figures.plot_token_probabilities(old, tmp_path / "old")
    assert _written(files)
    first = files.figure.axes[0]
    np.testing.assert_allclose(_curves(first)["w0"].get_ydata(), old.token_probs[0, 0])  # the emitted token alone
    assert not first.patches  # no window band
    with pytest.raises(ValueError, match="tokens"):
        figures.plot_token_probabilities(trace, tmp_path / "nope", tokens=[9])
    with pytest.raises(ValueError, match="row"):
        figures.plot_token_probabilities(trace, tmp_path / "nope", row=1)


def test_contrasts(tmp_path):
    trace = synthetic_trace()
    files = figures.plot_contrasts(trace, tmp_path / "fig3", [(1, "camera", "water"), (2, "black", "red")])
    assert _written(files)
    step1, step2 = files.figure.axes
    assert [step1.get_title(), step2.get_title()] == ["step 1: w1", "step 2: w2"]
    one, two = _curves(step1), _curves(step2)
    assert list(one) == ["correct: camera", "hallucinated: water"] and list(two) == ["correct: black", "hallucinated: red"]
    np.testing.assert_allclose(one["correct: camera"].get_ydata(), trace.competitor_probs[0, 1, :, 0])
    np.testing.assert_allclose(two["hallucinated: red"].get_ydata(), trace.watch_probs[0, 2, :, 0])
    # step 1: no critical layer, a mutation at layer 5 (mutation[:, 1, L - 2]); step 2: critical layer 3
    assert _vertical_marks(step1) == [(5.0, "mutation layer")]
    assert _vertical_marks(step2) == [(3.0, "critical layer 3")]
    assert "critical layer 3" in _legend_texts(step2.get_legend()) and "mutation layer" in _legend_texts(step1.get_legend())
    assert step1.get_ylabel() == "probability" and step1.get_xlabel() == "layer"
    with pytest.raises(ValueError, match="not recorded"):
        figures.plot_contrasts(trace, tmp_path / "nope", [(1, "camera", "dog")])
    with pytest.raises(ValueError, match="out of range"):
        figures.plot_contrasts(trace, tmp_path / "nope", [(7, "camera", "water")])
    with pytest.raises(ValueError, match="empty"):
        figures.plot_contrasts(trace, tmp_path / "nope", [])


def _marks(ax) -> tuple[list, list]:
    """``(critical, mutation)`` marks of a heatmap as sorted ``(column, step)`` pairs."""
    squares, crosses = (sorted(map(tuple, c.get_offsets().tolist())) for c in ax.collections[:2])
    return squares, crosses


@pytest.mark.parametrize("normalize, axis, annotate, reduction", [
    ("none", "layer", False, "sum"), ("layer", "paper", True, "paper"), ("layer", "layer", False, "sum"),
])
def test_heatmap_options(tmp_path, normalize, axis, annotate, reduction):
    trace = synthetic_trace(reduction=reduction)
    files = figures.plot_jsd_heatmap(trace, tmp_path / "fig4", highlight_layer=2, normalize=normalize, axis=axis,
                                     annotate=annotate, cmap="Purples")
    assert _written(files)
    ax, colorbar = files.figure.axes
    values = ax.images[0].get_array()
    assert values.shape == (STEPS, LAYERS)
    expected = trace.jsd[0] / trace.jsd[0].max(axis=0) if normalize == "layer" else trace.jsd[0]
    np.testing.assert_allclose(values, expected)
    assert ax.images[0].get_cmap().name == "Purples"
    # critical layer c at column c - 1 of its step (steps 0, 2, 3, 4: c = 2, 3, 2, 2; step 1 none);
    # the mutation at layer 5 of step 1 at column 4
    assert _marks(ax) == ([(1.0, 0.0), (1.0, 3.0), (1.0, 4.0), (2.0, 2.0)], [(4.0, 1.0)])
    assert [c.get_label() for c in ax.collections[:2]] == ["critical layer", "mutation layer"]
    assert _vertical_marks(ax)[0][0] == 1.0  # highlight_layer 2 = column 1
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ([str(j) for j in range(LAYERS)] if axis == "paper" else [str(j) for j in range(1, LAYERS + 1)])
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{t}: w{t}" for t in range(STEPS)]
    assert ax.get_xlabel() == figures.common.axis_title(axis) and ax.get_ylabel() == "step: emitted token"
    assert ("scaled to max-abs 1" in ax.get_title()) == (normalize == "layer") and "raw readout" in ax.get_title()
    assert ("authors' formula" in colorbar.get_ylabel()) == (reduction == "paper")
    assert len(ax.texts) == (STEPS * LAYERS if annotate else 0)
    assert _legend_texts(files.figure.legends[0]) == ["critical layer", "mutation layer"]
    with pytest.raises(ValueError, match="axis"):
        figures.plot_jsd_heatmap(trace, tmp_path / "nope", axis="depth")


def test_heatmap_moves_its_marks_with_the_detection(tmp_path):
    trace = synthetic_trace()
    trace.critical[0] = [4, 4, 0, 0, 1]
    trace.mutation[0] = False
    trace.mutation[0, 3, [0, 5]] = True  # layers 1 and L at step 3
    ax = figures.plot_jsd_heatmap(trace, tmp_path / "moved").figure.axes[0]
    assert _marks(ax) == ([(0.0, 4.0), (3.0, 0.0), (3.0, 1.0)], [(0.0, 3.0), (5.0, 3.0)])
    assert _vertical_marks(ax) == []  # no highlight_layer
    assert figures.plot_jsd_heatmap(trace, tmp_path / "capped", max_tokens=2).figure.axes[0].images[0].get_array().shape == (2, LAYERS)


def test_jsd_comparison_and_curves(tmp_path):
    lvlm, text_only = synthetic_trace(), synthetic_trace(steps=3, seed=1)
    files = figures.plot_jsd_comparison([lvlm, text_only], ["LVLM", "text only"], tmp_path / "control", axis="paper")
    assert _written(files)
    left, right, colorbar, below = files.figure.axes
    assert [left.get_title(), right.get_title()] == ["LVLM", "text only"]
    np.testing.assert_allclose(left.images[0].get_array(), lvlm.jsd[0])
    np.testing.assert_allclose(right.images[0].get_array(), text_only.jsd[0])
    top = max(lvlm.jsd.max(), text_only.jsd.max())
    assert left.images[0].get_clim() == right.images[0].get_clim() == (0.0, top)  # one colour scale
    means = _curves(below)
    assert list(means) == ["LVLM (mean of 5)", "text only (mean of 3)"]
    np.testing.assert_allclose(means["LVLM (mean of 5)"].get_ydata(), lvlm.jsd[0].mean(axis=0))
    np.testing.assert_allclose(means["text only (mean of 3)"].get_ydata(), text_only.jsd[0].mean(axis=0))
    assert len(below.get_lines()) == 5 + 1 + 3 + 1  # every token's curve thin, the mean bold
    assert [t.get_text() for t in below.get_xticklabels()] == [str(j) for j in range(LAYERS)]  # the paper's axis
    scaled = figures.plot_jsd_comparison([lvlm, text_only], ["a", "b"], tmp_path / "scaled", normalize="layer")
    assert _written(scaled)
    assert scaled.figure.axes[0].images[0].get_array().max(axis=0).tolist() == [1.0] * LAYERS
    curves = {"images": np.random.default_rng(0).random((4, LAYERS)), "text only": np.random.default_rng(1).random(LAYERS)}
    files = figures.plot_jsd_curves(curves, tmp_path / "curves", axis="paper", title="step 0")
    assert _written(files)
    (ax,) = files.figure.axes
    drawn = _curves(ax)
    assert list(drawn) == ["images (mean of 4)", "text only (mean of 1)"] == _legend_texts(ax.get_legend())
    np.testing.assert_allclose(drawn["images (mean of 4)"].get_ydata(), curves["images"].mean(axis=0))
    assert len(ax.get_lines()) == 4 + 1 + 1 + 1
    assert (ax.get_title(), ax.get_ylabel(), ax.get_xlabel()) == ("step 0", "JSD (nats)", figures.common.axis_title("paper"))
    with pytest.raises(ValueError, match="one title"):
        figures.plot_jsd_comparison([lvlm], ["a", "b"], tmp_path / "nope")
    depths = figures.plot_jsd_comparison([lvlm, synthetic_trace(layers=4)], ["6 layers", "4 layers"], tmp_path / "depths")
    assert _written(depths)
    assert [ax.images[0].get_array().shape for ax in depths.figure.axes[:2]] == [(STEPS, 6), (STEPS, 4)]


def _groups(ax) -> dict[str, int]:
    """Layer-group label -> number of t-SNE points drawn with it (a group may span several scatters)."""
    counts, label = {}, None
    for collection in ax.collections:
        label = collection.get_label() if not collection.get_label().startswith("_") else label
        counts[label] = counts.get(label, 0) + len(collection.get_offsets())
    return counts


@pytest.mark.parametrize("scale, last_state, paths", [("none", "raw", True), ("maxabs", "normed", False)])
def test_tsne_tokens(tmp_path, scale, last_state, paths):
    trace = synthetic_trace()
    files = figures.plot_tsne_tokens(trace, tmp_path / "fig6", scale=scale, last_state=last_state, paths=paths)
    assert _written(files)
    (ax,) = files.figure.axes
    # c = 2, the most common detected critical layer: groups 1-2, 3-5, 6 (no 3..c group), T = 5 points per layer
    final = "layer 6 (after the final norm)" if last_state == "normed" else "layer 6 (before the final norm)"
    assert _groups(ax) == {"layers 1-2": 2 * STEPS, "layers 3-5": 3 * STEPS, final: STEPS}
    assert [c.get_facecolor()[0][:3].round(3).tolist() for c in ax.collections] == \
        [list(np.round(matplotlib.colors.to_rgb(c), 3)) for c in figures.common.GROUP_COLORS[:3]]
    assert files.figure.legends[0].get_title().get_text() == "c = 2 (most common detected critical layer)"
    assert len(ax.get_lines()) == (STEPS if paths else 0)  # one path per token through its layers
    assert bool(ax.texts) == paths  # the tokens' labels at their last layer
    assert f"{STEPS} tokens x {LAYERS} layers" in ax.get_title() and "perplexity 9.7 (too few points for 40)" in ax.get_title()
    assert ("MaxAbs-scaled" in ax.get_title()) == (scale == "maxabs")
    given = figures.plot_tsne_tokens(trace, tmp_path / "given", critical=4)
    assert _written(given)
    assert _groups(given.figure.axes[0]) == {"layers 1-2": 10, "layers 3-4": 10, "layer 5": 5, "layer 6 (before the final norm)": 5}
    assert given.figure.legends[0].get_title().get_text() == "c = 4 (given)"


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
    files = figures.plot_tsne_images(trace, tmp_path / "fig7")
    assert _written(files)
    (ax,) = files.figure.axes
    # step 0 of 4 images: c = 2; every image's layers drawn with its answer's marker, one scatter per image and group
    assert _groups(ax) == {"layers 1-2": 4 * 2, "layers 3-5": 4 * 3, "layer 6 (before the final norm)": 4}
    assert len(ax.collections) == 3 * 4 and len(ax.get_lines()) == 4
    groups, answers = files.figure.legends
    assert _legend_texts(answers) == ["answer0 (2)", "answer1 (2)"] and answers.get_title().get_text() == "answer (images)"
    markers = [h.get_marker() for h in answers.legend_handles]
    assert markers[0] != markers[1]
    assert "across 4 images (step 0)" in ax.get_title()
    paper = figures.plot_tsne_images(trace, tmp_path / "paper", scale="maxabs", last_state="normed", paths=False,
                                     labels=["a", "b", "c", "d"], step=1)
    assert _written(paper)
    assert _legend_texts(paper.figure.legends[1]) == ["a (1)", "b (1)", "c (1)", "d (1)"]
    assert "layer 6 (after the final norm)" in _groups(paper.figure.axes[0]) and not paper.figure.axes[0].get_lines()
    # step 1 of every image has critical layer 0: the fallback c = round(18 / 32 * 6) = 3
    assert paper.figure.legends[0].get_title().get_text() == "c = 3 (none detected; the authors' 18 of 32, scaled)"
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


def test_profile_bars_and_chosen_layers(tmp_path):
    from lvlm_skip.profiles import LayerProfile, LayerStatistics

    L = 6
    mutation = np.zeros((4, L), dtype=bool)
    mutation[[0, 1], 4] = True  # layer 5 in 2 of the 3 tokens with a critical layer
    everything = LayerStatistics.from_detections(np.array([2, 2, 3, 0]), mutation)
    content = LayerStatistics.from_detections(np.array([3, 3]), np.zeros((2, L), dtype=bool))
    profile = LayerProfile(3, (5, 6), L, {"all": everything, "content": content}, rule={"basis": "all"})
    files = figures.plot_profile(profile, tmp_path / "profile", title="tiny")
    assert _written(files)
    top, bottom = files.figure.axes
    # one bar per layer 1..L and token set; the critical share (%) and the mutation frequency (%)
    (all_c, content_c), (all_m, content_m) = top.containers, bottom.containers
    np.testing.assert_allclose([bar.get_height() for bar in all_c], [0, 50, 25, 0, 0, 0])
    np.testing.assert_allclose([bar.get_height() for bar in content_c], [0, 0, 100, 0, 0, 0])
    np.testing.assert_allclose([bar.get_height() for bar in all_m], [0, 0, 0, 0, 200 / 3, 0])
    assert not any(bar.get_height() for bar in content_m)
    assert [round(bar.get_x() + bar.get_width(), 6) for bar in all_c] == [round(j, 6) for j in np.arange(1, L + 1)]
    assert _vertical_marks(top) == [(3.0, "chosen c = 3")]
    assert [x for x, _ in _vertical_marks(bottom)] == [5.0, 6.0]
    assert _legend_texts(top.get_legend()) == ["chosen c = 3", "all tokens (n=4; no critical layer: 25%)",
                                               "content tokens (n=2; no critical layer: 0%)"]
    assert _legend_texts(bottom.get_legend()) == ["chosen M = 5, 6", "all tokens", "content tokens"]
    assert (top.get_ylabel(), bottom.get_ylabel(), bottom.get_xlabel()) == \
        ("tokens with critical layer c (%)", "mutation frequency (%)", "layer")
    assert top.get_title().startswith("Layer profile of tiny: critical layers")
