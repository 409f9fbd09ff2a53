"""The skip-experiment recipes (Fig. 5) end to end on a saved tiny LLaVA, and their word diff."""

from __future__ import annotations

import json
import re

import pytest

from recipes import skip_experiments as sx

TINY_LAYERS = 16
GIVEN = ["--critical", "4", "--mutation", "12,13", "--keep-last", "3"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A 16-layer tiny LLaVA saved with ``save_pretrained`` (model and processor)."""
    from lvlm_skip.tiny import build_tiny_llava

    model, processor = build_tiny_llava(num_layers=TINY_LAYERS, hidden_size=64, intermediate_size=128)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    folder = tmp_path_factory.mktemp("tiny-llava")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def two_images(tmp_path_factory):
    from lvlm_skip.scenes import generate

    folder = tmp_path_factory.mktemp("images")
    paths = []
    for scene in generate("test", 0, 2):
        path = folder / f"scene{scene.index}.png"
        scene.image.save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def fig5_run(tiny_folder, two_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("fig5")
    argv = ["--model", str(tiny_folder), "--images", *two_images, "--out", str(out), "--max-new-tokens", "3",
            "--no-progress", *GIVEN]
    assert sx.main(argv) == 0
    return out, argv


def test_diff_marks_only_the_changed_word():
    assert sx.markdown_diff("a red apple on the left", "a green apple on the left", show_deleted=False) == \
        "a **green** apple on the left"
    assert sx.markdown_diff("a red apple on the left", "a green apple on the left") == \
        "a ~~red~~ **green** apple on the left"
    html = sx.html_diff("a red apple on the left", "a green apple on the left")
    assert re.findall(r"<ins>(.*?)</ins>", html) == ["green"] and re.findall(r"<del>(.*?)</del>", html) == ["red"]
    assert sx.diff_words("two cups", "two cups") == [("equal", "two"), ("equal", "cups")]
    assert sx.markdown_diff("a cup", "a cup and a dog", show_deleted=False) == "a cup **and** **a** **dog**"


def test_format_layers():
    assert sx.format_layers([5, 6, 7, 8, 9, 10, 11]) == "5-11"
    assert sx.format_layers([12, 13]) == "12, 13"
    assert sx.format_layers([]) == "none"


@pytest.mark.slow
def test_fig5_outputs(fig5_run):
    out, _ = fig5_run
    md = (out / "fig5_skip_table.md").read_text()
    html = (out / "fig5_skip_table.html").read_text()
    results = json.loads((out / "results.json").read_text())

    # 1. the table: header with the image and four text columns, one row per image
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert [c.strip() for c in rows[0].strip("|").split("|")] == ["image", "original", "skip.1", "skip.2", "skip.3"]
    assert len(rows) == 2 + 2
    assert html.count("<tr>") == 1 + 2 and html.count('src="data:image/png;base64,') == 2

    # 2. the layers each variant skipped at step 0
    assert set(results["images"]) == {"scene0", "scene1"}
    for entry in results["images"].values():
        variants = entry["variants"]
        assert variants["none"]["skipped_step0"] == []
        assert variants["skip1"]["skipped_step0"] == list(range(5, 12))
        assert variants["skip2"]["skipped_step0"] == [12, 13]
        assert variants["skip3"]["skipped_step0"] == list(range(5, 14))
        assert all(v["num_tokens"] >= 1 for v in variants.values())
        assert (out / "analysis" / entry["stem"] / "fig4_jsd_heatmap.png").is_file()
        assert (out / "analysis" / entry["stem"] / "fig2_token_probabilities.png").is_file()


@pytest.mark.slow
def test_rerun_generates_nothing(fig5_run, monkeypatch):
    out, argv = fig5_run
    calls = []
    monkeypatch.setattr(sx, "generate_text", lambda *a, **k: calls.append(a) or pytest.fail("generated again"))
    monkeypatch.setattr(sx, "analyse", lambda *a, **k: calls.append(a) or pytest.fail("analysed again"))
    monkeypatch.setattr(sx, "load", lambda *a, **k: pytest.fail("loaded the model again"))
    before = (out / "results.json").read_text()
    assert sx.main(argv) == 0
    from recipes import skip2

    assert skip2.main(argv) == 0  # a single-variant entry point reuses the same results
    assert calls == []
    assert (out / "results.json").read_text() == before
    rows = [line for line in (out / "skip2_table.md").read_text().splitlines() if line.startswith("|")]
    assert [c.strip() for c in rows[0].strip("|").split("|")] == ["image", "original", "skip.2"]


def test_bad_image_exits_2(tiny_folder, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    for image in (str(bad), str(tmp_path / "missing.png")):
        with pytest.raises(SystemExit) as exit_info:
            sx.main(["--model", str(tiny_folder), "--images", image, "--out", str(tmp_path / "out"), *GIVEN])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "image" in err


def test_missing_model_exits_2(two_images, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sx.main(["--model", str(tmp_path / "nowhere"), "--images", two_images[0], "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "--model" in capsys.readouterr().err


def test_presets_match_the_paper():
    seven = sx.PRESETS["llava-1.5-7b"]
    assert (seven.num_layers, seven.critical, seven.mutation, seven.keep_last) == (32, 18, (27, 28, 29, 30), 5)
    assert sx.PRESETS["llava-1.5-13b"].num_layers == 40
