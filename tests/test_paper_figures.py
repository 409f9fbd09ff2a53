"""recipes.paper_figures end to end on the tiny random LLaVA, its scene-truth contrasts, and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recipes import paper_figures as pf

TINY = ["--model", "tiny", "--no-progress", "--max-new-tokens", "3", "--answer-tokens", "2"]
DESCRIBED = ("fig2_token_probabilities", "fig4_jsd_heatmap", "fig4_vs_text_only", "fig6_tsne_tokens")


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    """An ``image/``-like folder: one group ``flower`` of 3 generated scenes."""
    root = tmp_path_factory.mktemp("image")
    (root / "flower").mkdir()
    for scene in pf.scene_generator().generate("test", 0, 3):
        scene.image.save(root / "flower" / f"flower{scene.index + 1}.png")
    return root


@pytest.fixture()
def drawn(monkeypatch):
    """Every figure the recipe draws: ``{output path without suffix: FigureFiles}`` (the recipe keeps none)."""
    from lvlm_skip import figures

    record = {}

    def spy(function):
        def draw(*args, **kwargs):
            files = function(*args, **kwargs)
            record[files[0].with_suffix("")] = files
            return files
        return draw

    for name in ("plot_token_probabilities", "plot_contrasts", "plot_jsd_heatmap", "plot_jsd_comparison", "plot_jsd_curves",
                 "plot_tsne_tokens", "plot_tsne_images"):
        monkeypatch.setattr(figures, name, spy(getattr(figures, name)))
    return record


def _check_drawn(drawn, out, mode_name, trace, control, answers):
    """The figures of one mode show the saved traces with the mode's choices."""
    from lvlm_skip import figures
    from lvlm_skip.figures.heatmap import heatmap_matrix

    mode = pf.MODES[mode_name]
    folder = out / mode_name / "describe" / "scenes" / "test-consistent-0"
    L, n = trace.num_layers, int(trace.lengths[0])
    columns = [str(j) for j in figures.column_labels(L, mode.axis)]
    # Fig. 2: one panel per answer token
    panels = [ax for ax in drawn[folder / "fig2_token_probabilities"].figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [figures.common.token_label(trace, 0, t, width=16) for t in range(n)]
    # Fig. 4: the trace's divergences, scaled and labelled as the mode says, its critical layers marked
    (ax, _) = drawn[folder / "fig4_jsd_heatmap"].figure.axes
    np.testing.assert_allclose(ax.images[0].get_array(), heatmap_matrix(trace, normalize=mode.normalize))
    assert ax.images[0].get_cmap().name == mode.cmap and len(ax.texts) == (n * L if mode.annotate else 0)
    assert [t.get_text() for t in ax.get_xticklabels()] == columns[::max(1, int(np.ceil(L / 16)))]
    steps = np.nonzero(trace.critical[0, :n] > 0)[0]
    assert sorted(map(tuple, ax.collections[0].get_offsets().tolist())) == \
        sorted((float(trace.critical[0, t] - 1), float(t)) for t in steps)
    # the text-only control beside it: the control trace's divergences
    left, right, *_ = drawn[folder / "fig4_vs_text_only"].figure.axes
    np.testing.assert_allclose(right.images[0].get_array(), heatmap_matrix(control, normalize=mode.normalize))
    assert right.get_title() == "text only (no image)" and left.get_title() == "LVLM: test-consistent-0"
    # Fig. 6: T x L points; the mode's last state
    (ax,) = drawn[folder / "fig6_tsne_tokens"].figure.axes
    assert sum(len(c.get_offsets()) for c in ax.collections) == n * L
    final = "after the final norm" if mode.last_state == "normed" else "before the final norm"
    assert any(final in c.get_label() for c in ax.collections)
    # Fig. 7 and the step-0 control of the group: 3 images x L points, the images' mean curve against the text-only one
    (ax,) = drawn[out / mode_name / "fig7_flower"].figure.axes
    assert sum(len(c.get_offsets()) for c in ax.collections) == answers.token_ids.shape[0] * L
    (ax,) = drawn[out / mode_name / "control_flower"].figure.axes
    means = {line.get_label(): line.get_ydata() for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert list(means) == ["flower: 3 images (mean of 3)", "text only (no image) (mean of 1)"]
    np.testing.assert_allclose(means["flower: 3 images (mean of 3)"], answers.jsd[:, 0].mean(axis=0))
    assert ax.get_ylabel() == figures.common.divergence_name(mode.reduction)


@pytest.mark.slow
def test_generated_scenes_both_modes(tmp_path, drawn):
    from lvlm_skip import Trace

    out = tmp_path / "run"
    assert pf.main(TINY + ["--out", str(out), "--n-describe", "1", "--n-scenes", "3"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert set(settings["modes"]) == {"paper", "default"} and set(settings["questions"]) == {"flower", "apple"}
    assert (out / "index.md").read_text().startswith("# Paper figures: tiny")
    for mode, (readout, reduction) in {"paper": ("raw", "paper"), "default": ("normed", "sum")}.items():
        described = out / mode / "describe" / "scenes" / "test-consistent-0"
        assert all((described / f"{name}.png").is_file() for name in DESCRIBED), sorted(described.iterdir())
        trace = Trace.load(described)
        assert (trace.meta["readout"], trace.meta["reduction"]) == (readout, reduction)
        for group in ("flower", "apple"):
            assert (out / mode / f"fig7_{group}.png").is_file() and (out / mode / f"control_{group}.png").is_file()
            answers = Trace.load(out / mode / "vqa" / group)
            assert answers.token_ids.shape[0] == 3 and answers.meta["question"] == pf.SCENE_QUESTIONS[group]
        control = Trace.load(out / mode / "text_only" / "describe")
        assert control.meta["prompt_length"] < trace.meta["prompt_length"]  # no image tokens
        _check_drawn(drawn, out, mode, trace, control, Trace.load(out / mode / "vqa" / "flower"))
    assert len(list((out / "images" / "flower").glob("*.png"))) == 3


@pytest.mark.slow
def test_image_folder_groups_and_questions(image_root, tmp_path):
    from lvlm_skip import Trace

    out = tmp_path / "run"
    assert pf.main(TINY + ["--out", str(out), "--images", str(image_root), "--describe-limit", "1",
                           "--question", "flower=what color is the cup ?"]) == 0
    assert sorted(p.name for p in (out / "default" / "describe" / "flower").iterdir()) == ["flower1"]
    assert Trace.load(out / "paper" / "vqa" / "flower").meta["question"] == "what color is the cup ?"
    assert (out / "paper" / "fig7_flower.png").is_file() and not (out / "images").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--out", "{file}"], "--out '{file}' is an existing file"),
        (["--images", "{missing}"], "--images '{missing}' does not exist"),
        (["--question", "flower"], "expected GROUP=TEXT"),
        (["--images", "{root}", "--question", "tulip=what ?"], "group(s) ['tulip'] that do not exist"),
        (["--max-new-tokens", "0"], "expected a positive int"),
    ],
)
def test_bad_input_exits_2_with_one_line_before_loading(extra, message, image_root, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    names = {"file": str(tmp_path / "file"), "missing": str(tmp_path / "nope"), "root": str(image_root)}
    extra = [e.format(**names) for e in extra]
    argv = ["--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "out"), *extra]  # a model that cannot load
    with pytest.raises(SystemExit) as info:
        pf.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{pf.PROG}: error: ") and message.format(**names) in err[0], err


def test_text_only_model_is_refused(tmp_path, capsys, tiny_llama):
    from lvlm_skip.inputs.builtin_models import build_word_tokenizer

    tiny_llama.save_pretrained(tmp_path / "llama")
    build_word_tokenizer().save_pretrained(tmp_path / "llama")
    with pytest.raises(SystemExit):
        pf.main(["--model", str(tmp_path / "llama"), "--out", str(tmp_path / "out"), "--no-progress", "--n-scenes", "2"])
    assert "is text-only: the paper's figures need a vision-language --model" in capsys.readouterr().err


def test_scene_contrasts_pair_wrong_words_with_the_truth():
    from test_figures import synthetic_trace

    generator = pf.scene_generator()
    scene = next(s for s in generator.generate("test-breaking", 0, 20) if len(s.objects) >= 2)
    first, second = scene.objects[:2]
    wrong_kind = next(k for k in generator.OBJECTS if scene.get(k) is None)
    wrong_color = next(c for c in generator.COLORS if c not in (first.color, second.color))
    trace = synthetic_trace(steps=6)
    trace.watch_tokens = [first.kind, first.color, second.kind, second.color]
    trace.watch_token_ids = [0, 1, 2, 3]
    trace.watch_probs = np.random.default_rng(0).random((1, 6, trace.num_layers, 4))
    # "a <wrong colour> <wrong kind> at <second's position>": both words are about the second object
    trace.tokens = [["a", wrong_color, wrong_kind, "at", "the", second.position]]
    assert pf.scene_contrasts(trace, scene) == [(1, second.color, wrong_color), (2, second.kind, wrong_kind)]
    # no position: the colour of the next object word, the likeliest present kind
    trace.tokens = [["a", wrong_color, first.kind, ".", wrong_kind, "."]]
    likeliest = max((first.kind, second.kind), key=lambda w: trace.probabilities(w, 4).max())
    assert pf.scene_contrasts(trace, scene) == [(1, first.color, wrong_color), (4, likeliest, wrong_kind)]


@pytest.mark.slow
def test_descriptions_traced_in_batches_equal_those_traced_alone(tmp_path):
    from lvlm_skip import Trace

    runs = {}
    for size in (1, 2):
        out = tmp_path / f"batch{size}"
        assert pf.main(TINY + ["--out", str(out), "--n-describe", "2", "--n-scenes", "1", "--batch-size", str(size)]) == 0
        runs[size] = out
    described = sorted(p.relative_to(runs[1]) for p in runs[1].glob("*/describe/*/*") if p.is_dir())
    assert len(described) == 4  # 2 scenes x 2 modes
    for folder in described:
        alone, batched = Trace.load(runs[1] / folder), Trace.load(runs[2] / folder)
        assert batched.texts == alone.texts and batched.watch_tokens == alone.watch_tokens
        for name in Trace._ARRAYS:
            theirs = getattr(alone, name)
            if theirs is not None:  # the hidden states are stored in float16: one unit in its last place
                tolerance = dict(rtol=2e-3, atol=1e-4) if theirs.dtype == np.float16 else dict(atol=1e-5)
                np.testing.assert_allclose(getattr(batched, name), theirs, err_msg=name, **tolerance)
