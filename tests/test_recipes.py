"""The Fig. 5 recipe (python -m recipes.fig5): layers from flags, presets and profiles, one-line errors,
results.json with resume, the tables, and end-to-end runs on a saved tiny LLaVA."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from lvlm_skip.errors import InputError
from recipes.fig5 import cli, generation, layers, run, tables, word_diff
from recipes.fig5.layers import SKIP_VARIANTS, resolve_layers
from recipes.fig5.results import ImageResult, ResultsFile, RunSettings, VariantResult
from tiny_models import make_llava

TINY_LAYERS = 8
GIVEN = ["--critical", "2", "--mutation", "6,7", "--keep-last", "2"]
PROG = "python -m recipes.fig5: error: "


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """An 8-layer tiny LLaVA saved with ``save_pretrained`` (model and processor)."""
    model, processor = make_llava(TINY_LAYERS, limit=200_000)
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


def write_profile(path, critical=2, mutation=(6, 7), num_layers=TINY_LAYERS):
    from lvlm_skip.profiles import LayerProfile, LayerStatistics

    stats = LayerStatistics(10, tuple([0.0] * (num_layers + 1)), tuple([0.0] * num_layers))
    return LayerProfile(critical, tuple(mutation), num_layers, {"all": stats}).save(path)


# ------------------------------------------------------------------------------- word diff, names


def test_diff_marks_only_the_changed_word():
    assert word_diff.markdown_diff("a red apple on the left", "a green apple on the left", show_deleted=False) == \
        "a **green** apple on the left"
    assert word_diff.markdown_diff("a red apple on the left", "a green apple on the left") == \
        "a ~~red~~ **green** apple on the left"
    html = word_diff.html_diff("a red apple on the left", "a green apple on the left")
    assert re.findall(r"<ins>(.*?)</ins>", html) == ["green"] and re.findall(r"<del>(.*?)</del>", html) == ["red"]
    assert word_diff.diff_words("two cups", "two cups") == [("equal", "two"), ("equal", "cups")]
    assert word_diff.markdown_diff("a cup", "a cup and a dog", show_deleted=False) == "a cup **and** **a** **dog**"
    assert word_diff.markdown_diff("", "a_b|c") == r"**a\_b\|c**"


def test_format_layers():
    assert layers.format_layers([5, 6, 7, 8, 9, 10, 11]) == "5-11"
    assert layers.format_layers([12, 13]) == "12, 13"
    assert layers.format_layers([13, 5, 6, 7]) == "5-7, 13"
    assert layers.format_layers([]) == "none"


def test_variants_and_layers_options():
    assert cli.parse_variants("skip3,skip.1") == ("skip1", "skip3")
    assert cli.build_parser().parse_args([]).variants == SKIP_VARIANTS
    assert cli.parse_layers("27-30") == (27, 28, 29, 30) and cli.parse_layers("13,12,12") == (12, 13)
    for bad in ("skip4", "", "none"):
        with pytest.raises(Exception, match="subset of skip1,skip2,skip3"):
            cli.parse_variants(bad)
    for bad in ("3-x", "0,1", ","):
        with pytest.raises(Exception, match="layers like"):
            cli.parse_layers(bad)


# ------------------------------------------------------------------------------------ the layers


def test_presets_are_the_library_s_and_give_no_mutation_layers():
    seven = resolve_layers(("skip3",), preset="llava-1.5-7b")
    assert (seven.critical, seven.mutation, seven.keep_last, seven.num_layers) == (18, None, 5, 32)
    assert seven.critical_source == "preset llava-1.5-7b"
    assert resolve_layers(("skip3",), preset="llava-1.5-13b").critical == 16
    import lvlm_skip.profiles.presets

    assert cli.PRESETS is lvlm_skip.profiles.presets.PRESETS and not hasattr(layers, "PRESETS")
    for variant in ("skip1", "skip2"):
        with pytest.raises(InputError, match="the paper gives no mutation-layer numbers") as error:
            resolve_layers((variant, "skip3"), preset="llava-1.5-7b")
        assert "--mutation" in str(error.value) and "--profile" in str(error.value) and "\n" not in str(error.value)
    with_mutation = resolve_layers(SKIP_VARIANTS, preset="llava-1.5-7b", mutation=(27, 28))
    assert with_mutation.wrap_options("skip1") == {"mode": "static", "positions": "generated", "critical_layer": 18,
                                                   "mutation_layers": (27, 28)}
    assert with_mutation.wrap_options("skip3")["keep_last"] == 5
    with pytest.raises(InputError, match="needs the critical layer and only --mutation"):
        resolve_layers(("skip3",), mutation=(27,))


def test_static_mode_with_nothing_given_measures_per_prompt_and_says_so():
    choice = resolve_layers(SKIP_VARIANTS)
    assert choice.measured_per_prompt
    assert choice.wrap_options("skip1") == {"mode": "static", "positions": "generated"}
    assert choice.to_dict()["measured"] == "per prompt"
    assert "measured per prompt" in choice.describe()


def test_online_mode_detects_what_is_not_given():
    choice = resolve_layers(SKIP_VARIANTS, mode="online", preset="llava-1.5-7b")
    assert choice.wrap_options("skip2") == {"mode": "online"}
    assert choice.to_dict()["measured"] == "per step"
    assert "M detected at every step" in choice.describe() and "c = 18 (preset llava-1.5-7b)" in choice.describe()
    with pytest.raises(InputError, match="static-mode option"):
        resolve_layers(SKIP_VARIANTS, mode="online", positions="all")


def test_profile_gives_the_layers_and_flags_win(tmp_path):
    path = str(write_profile(tmp_path / "profile.json", critical=3, mutation=(6, 7)))
    choice = resolve_layers(SKIP_VARIANTS, profile=path)
    assert (choice.critical, choice.mutation, choice.num_layers) == (3, (6, 7), TINY_LAYERS)
    assert choice.wrap_options("skip2") == {"mode": "static", "positions": "generated", "mutation_layers": (6, 7),
                                            "profile": path}
    assert resolve_layers(SKIP_VARIANTS, profile=path, critical=2).critical_source == "--critical"
    # a profile measured on the model beats the paper's reading, but must be for the same depth
    with pytest.raises(InputError, match="32 layers but profile"):
        resolve_layers(SKIP_VARIANTS, profile=path, preset="llava-1.5-7b")
    deep = str(write_profile(tmp_path / "deep.json", critical=20, mutation=(27,), num_layers=32))
    assert resolve_layers(SKIP_VARIANTS, profile=deep, preset="llava-1.5-7b").critical_source == f"profile {deep}"


def test_profile_without_mutation_layers_refuses_skip1_and_skip2(tmp_path):
    path = str(write_profile(tmp_path / "none.json", critical=3, mutation=()))
    for variant in ("skip1", "skip2"):
        for mode in ("static", "online"):
            with pytest.raises(InputError, match="would skip nothing: profile .* found no mutation layer"):
                resolve_layers((variant,), mode=mode, profile=path)
    assert resolve_layers(("skip3",), profile=path).critical == 3
    with pytest.raises(InputError, match="does not exist"):
        resolve_layers(SKIP_VARIANTS, profile=str(tmp_path / "missing.json"))


def test_options_lvlm_skip_rejects_fail_before_any_model():
    with pytest.raises(InputError, match="skip.1: .*would skip nothing"):
        resolve_layers(("skip1",), critical=6, mutation=(7,))
    choice = resolve_layers(SKIP_VARIANTS, critical=2, mutation=(9,))
    with pytest.raises(InputError, match="mutation layer 9 is out of range: the model has layers 1..8"):
        choice.check_depth(TINY_LAYERS)
    with pytest.raises(InputError, match="preset llava-1.5-7b is for a 32-layer model; the model has 8"):
        resolve_layers(("skip3",), preset="llava-1.5-7b").check_depth(TINY_LAYERS)


# ---------------------------------------------------------------------------------- results.json


def settings(**changes) -> RunSettings:
    values = dict(model="m", model_sha256="a" * 64, prompt="p", max_new_tokens=3, device_type="cpu", mode="static",
                  positions="generated", critical=2, mutation=(6, 7), keep_last=2)
    return RunSettings(**{**values, **changes})


def test_results_are_reused_only_under_equal_settings(tmp_path):
    stored = ResultsFile(tmp_path, settings(model="/elsewhere"), {})
    stored.images["x"] = ImageResult("x", "x.png", image_sha256="1", variants={"none": VariantResult("a b", 2, 0.1)})
    stored.save()
    again = ResultsFile.open(tmp_path, settings(), {})  # another path to the same weights: the same model
    assert again.finished("x", "1").variants["none"].text == "a b"
    assert again.finished("x", "2") is None  # the image file changed
    with pytest.raises(InputError, match=r"other settings \(critical=2, not 3\); use --overwrite"):
        ResultsFile.open(tmp_path, settings(critical=3), {})
    assert ResultsFile.open(tmp_path, settings(critical=3), {}, overwrite=True).images == {}
    (tmp_path / "results.json").write_text("{")
    with pytest.raises(InputError, match="not a readable Fig. 5 result"):
        ResultsFile.open(tmp_path, settings(), {})


def test_tables_carry_the_papers_names_and_the_layer_source(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    described = {"none": VariantResult("a red cup", 3, 0.1)}
    described.update({v: VariantResult("a blue cup", 3, 0.1, skipped_step0=[3, 4, 5], skipped_any=[3, 4, 5],
                                       mean_skipped=3.0, calibration={"critical": 2, "mutation": [6]}) for v in SKIP_VARIANTS})
    results = [ImageResult("a", str(tmp_path / "a.png"), variants=described)]
    caption = tables.caption(SKIP_VARIANTS, "m", "p", resolve_layers(SKIP_VARIANTS).describe())
    md = tables.markdown_table(results, SKIP_VARIANTS, caption, tmp_path)
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert [c.strip() for c in rows[0].strip("|").split("|")] == ["image", "original", "skip.1", "skip.2", "skip.3"]
    assert "skip.1 skips c+1..m-1" in md and "measured per prompt" in md and "**blue**" in md
    assert "measured c=2, M=6" in md and 'src="a.png"' in md
    html = tables.html_table(results, SKIP_VARIANTS, caption)
    assert html.count("<tr>") == 2 and "<ins>blue</ins>" in html and "data:image/png;base64," in html
    assert tables.table_name(SKIP_VARIANTS) == "fig5_skip_table"
    assert tables.table_name(("skip1", "skip3")) == "fig5_skip1_skip3_table"


# ------------------------------------------------------------------------------ the command line


@pytest.fixture()
def no_model(monkeypatch):
    """Loading a model fails the test: bad input must be refused before."""
    import lvlm_skip.inputs.models

    monkeypatch.setattr(lvlm_skip.inputs.models, "load_model", lambda *a, **k: pytest.fail("loaded a model"))


@pytest.mark.parametrize("case", [
    "out-is-a-file", "out-in-proc", "broken-image", "missing-image", "missing-model", "folder-without-config",
    "bad-mutation", "critical-zero", "critical-out-of-range", "unknown-variant", "preset-without-mutation",
    "preset-of-another-depth", "missing-profile", "online-positions-all",
])
def test_bad_input_is_one_line_and_exit_2_before_any_model_loads(case, tiny_folder, two_images, tmp_path, capsys, no_model):
    (tmp_path / "file").write_text("x")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "empty-model").mkdir()
    model, image, out = ["--model", str(tiny_folder)], ["--images", two_images[0]], ["--out", str(tmp_path / "out")]
    argv = {
        "out-is-a-file": [*model, *image, "--out", str(tmp_path / "file"), *GIVEN],
        "out-in-proc": [*model, *image, "--out", "/proc/x", *GIVEN],
        "broken-image": [*model, "--images", str(tmp_path / "broken.png"), *out, *GIVEN],
        "missing-image": [*model, "--images", str(tmp_path / "missing.png"), *out, *GIVEN],
        "missing-model": ["--model", str(tmp_path / "nowhere"), *image, *out],
        "folder-without-config": ["--model", str(tmp_path / "empty-model"), *image, *out],
        "bad-mutation": [*model, *image, *out, "--mutation", "3-x"],
        "critical-zero": [*model, *image, *out, "--critical", "0", "--variants", "skip3"],
        "critical-out-of-range": [*model, *image, *out, "--critical", "40", "--variants", "skip3"],
        "unknown-variant": [*model, *image, *out, "--variants", "skip4"],
        "preset-without-mutation": [*model, *image, *out, "--preset", "llava-1.5-7b"],
        "preset-of-another-depth": [*model, *image, *out, "--preset", "llava-1.5-7b", "--variants", "skip3"],
        "missing-profile": [*model, *image, *out, "--profile", str(tmp_path / "nope.json")],
        "online-positions-all": [*model, *image, *out, "--mode", "online", "--positions", "all"],
    }[case]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(PROG), err


def test_progress_only_on_a_terminal(monkeypatch):
    from recipes.command import progress_enabled

    args = cli.build_parser().parse_args([])
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert not progress_enabled(args)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert progress_enabled(args)
    assert not progress_enabled(cli.build_parser().parse_args(["--no-progress"]))


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args, progress=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "run", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "python -m recipes.fig5: interrupted\n"


# -------------------------------------------------------------------------------- end to end, tiny


def test_a_profile_reaches_lvlm_skip_wrap(tiny_folder, two_images, tmp_path, capfd):
    path = write_profile(tmp_path / "profile.json", critical=2, mutation=(6, 7))
    out = tmp_path / "out"
    assert cli.main(["--model", str(tiny_folder), "--images", two_images[0], "--out", str(out), "--max-new-tokens", "2",
                     "--variants", "skip2", "--profile", str(path), "--no-analysis"]) == 0
    results = json.loads((out / "results.json").read_text())
    (entry,) = results["images"].values()
    assert entry["variants"]["skip2"]["skipped_step0"] == [6, 7]
    assert results["layers"]["mutation_source"] == f"profile {path}"
    assert results["settings"]["profile_sha256"] and results["layers"]["measured"] is None
    assert (out / "fig5_skip2_table.md").is_file() and not (out / "fig5_skip_table.md").exists()
    err = capfd.readouterr().err
    assert "Loading" not in err and "it/s" not in err and "\r" not in err  # no bars when stderr is not a terminal


@pytest.fixture(scope="module")
def fig5_run(tiny_folder, two_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("fig5")
    argv = ["--model", str(tiny_folder), "--images", *two_images, "--out", str(out), "--max-new-tokens", "3",
            "--no-progress", *GIVEN]
    assert cli.main(argv) == 0
    return out, argv


@pytest.mark.slow
def test_fig5_outputs(fig5_run):
    out, _ = fig5_run
    md = (out / "fig5_skip_table.md").read_text()
    html = (out / "fig5_skip_table.html").read_text()
    results = json.loads((out / "results.json").read_text())

    # 1. the table: the image and four text columns under the paper's names, one row per image
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert [c.strip() for c in rows[0].strip("|").split("|")] == ["image", "original", "skip.1", "skip.2", "skip.3"]
    assert len(rows) == 2 + 2
    assert html.count("<tr>") == 1 + 2 and html.count('src="data:image/png;base64,') == 2
    assert "c = 2 (--critical), M = 6, 7 (--mutation), keep\\_last 2 (--keep-last)" in md

    # 2. the layers each variant skipped at step 0
    assert set(results["images"]) == {"scene0", "scene1"}
    assert results["layers"]["critical"] == 2 and results["settings"]["critical"] == 2
    for entry in results["images"].values():
        variants = entry["variants"]
        assert variants["none"]["skipped_step0"] == []
        assert variants["skip1"]["skipped_step0"] == [3, 4, 5]
        assert variants["skip2"]["skipped_step0"] == [6, 7]
        assert variants["skip3"]["skipped_step0"] == [3, 4, 5, 6]
        assert all(v["num_tokens"] >= 1 for v in variants.values())
        assert (out / "analysis" / entry["stem"] / "fig4_jsd_heatmap.png").is_file()
        assert (out / "analysis" / entry["stem"] / "fig2_token_probabilities.png").is_file()


@pytest.mark.slow
def test_rerun_generates_nothing_and_a_subset_reuses_the_folder(fig5_run, monkeypatch):
    out, argv = fig5_run
    monkeypatch.setattr(generation, "describe", lambda *a, **k: pytest.fail("generated again"))
    monkeypatch.setattr(generation, "analyse", lambda *a, **k: pytest.fail("analysed again"))
    monkeypatch.setattr(run, "_load", lambda *a, **k: pytest.fail("loaded the model again"))
    before = (out / "results.json").read_text()
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--variants", "skip2"]) == 0
    assert (out / "results.json").read_text() == before
    rows = [line for line in (out / "fig5_skip2_table.md").read_text().splitlines() if line.startswith("|")]
    assert [c.strip() for c in rows[0].strip("|").split("|")] == ["image", "original", "skip.2"]


def test_static_mode_without_layers_records_the_per_prompt_measurement(tiny_folder, two_images, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["--model", str(tiny_folder), "--images", two_images[0], "--out", str(out), "--max-new-tokens", "2",
                     "--no-analysis", "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["layers"]["measured"] == "per prompt"
    assert "measured per prompt" in (out / "fig5_skip_table.md").read_text()
    (entry,) = results["images"].values()
    for variant in SKIP_VARIANTS:
        measured = entry["variants"][variant]["calibration"]
        assert {"critical", "mutation"} <= set(measured), measured


@pytest.mark.slow
def test_fig5_on_the_shipped_model_with_a_tiny_token_budget(tmp_path):
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "recipes" / "models" / "scene-llava"
    if not (shipped / "model.safetensors").is_file():
        pytest.skip("no shipped scene-llava")
    out = tmp_path / "out"
    assert cli.main(["--model", str(shipped), "--out", str(out), "--max-new-tokens", "4", "--no-progress"]) == 0
    md = (out / "fig5_skip_table.md").read_text()
    assert md.count("<img ") == 4 and "measured per prompt" in md
    results = json.loads((out / "results.json").read_text())
    assert len(results["images"]) == 4 and all(len(e["analysis"]["figures"]) >= 2 for e in results["images"].values())


def test_fig5_descriptions_in_batches_equal_those_alone(tmp_path):
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "recipes" / "models" / "scene-llava"
    described = {}
    for size in (1, 3):
        out = tmp_path / f"batch{size}"
        assert cli.main(["--model", str(shipped), "--out", str(out), "--max-new-tokens", "24", "--no-analysis",
                         "--variants", "skip1,skip3", "--batch-size", str(size), "--no-progress"]) == 0
        images = json.loads((out / "results.json").read_text())["images"]
        described[size] = {stem: {v: {k: x for k, x in r.items() if k != "seconds"} for v, r in entry["variants"].items()}
                           for stem, entry in images.items()}
    # the prompt's measured divergences agree to float32 rounding (padding changes the summation order); the rest exactly
    curves = {size: [r["calibration"].pop("jsd") for entry in d.values() for r in entry.values() if r["calibration"]]
              for size, d in described.items()}
    assert len(curves[1]) == 8 and np.allclose(curves[3], curves[1], rtol=1e-5, atol=1e-7)
    assert described[3] == described[1] and len(described[1]) == 4
    assert len({r["none"]["num_tokens"] for r in described[1].values()}) > 1  # rows of a batch end at different steps


def test_architecture_matrix_renders_a_junit_report(tmp_path, capsys):
    """recipes.architecture_matrix: outcomes by class and column, recorded cells, skips, refusals; a bad report is one line."""
    from recipes import architecture_matrix

    junit = tmp_path / "junit.xml"
    junit.write_text("""<?xml version="1.0"?><testsuites><testsuite>
<testcase classname="t" name="test_none_equals_stock[Llava]"/>
<testcase classname="t" name="test_online_skip_equals_cache_free_replay[Llava-skip2-extra0]">
  <properties><property name="cell" value="refused at wrap (sliding window)"/></properties></testcase>
<testcase classname="t" name="test_online_skip_equals_cache_free_replay[Llava-skip3-extra1]"><failure message="boom"/></testcase>
<testcase classname="t" name="test_left_padded_batch_of_two[Llava-online-skip3-replay]"><skipped message="no reference: why"/></testcase>
<testcase classname="t" name="test_refused_in_one_line[Blip2]">
  <properties><property name="refusal" value="unsupported model Blip2ForConditionalGeneration: looked for x"/></properties></testcase>
</testsuite></testsuites>""")
    table = architecture_matrix.table(architecture_matrix.outcomes(junit), "transformers 9.9")
    header, _, llava, blip = table.splitlines()[:4]
    cells = dict(zip([c.strip() for c in header.split("|")[2:-1]], [c.strip() for c in llava.split("|")[2:-1]]))
    assert llava.startswith("| LlavaForConditionalGeneration |")
    assert cells["stock, none = stock"] == "pass" and cells["online skip3 = replay"] == "FAIL"
    assert cells["online skip2 = replay"] == "refused at wrap (sliding window)"
    assert cells["batch 2: online skip3"] == "skipped: no reference" and cells["DoLa"] == "not in matrix"
    assert "Blip2ForConditionalGeneration | refused at `wrap` in one line (tested): unsupported model" in blip
    assert "transformers 9.9" in table
    (tmp_path / "bad.xml").write_text("<not xml")
    with pytest.raises(SystemExit) as stopped:
        architecture_matrix.main(["--junit", str(tmp_path / "bad.xml"), "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2 and "is not a readable JUnit report" in capsys.readouterr().err


def test_speculative_drafts_configurations():
    from recipes.speculative_drafts import draft_configs

    names = [c.name for c in draft_configs(8, (14,), 16, 9, k=4)]
    assert names[0] == "stock" and "skip1 static (lossy)" in names
    for boundary in ("c = 8", "c-2 = 6", "c+2 = 10", "no profile = 9"):
        assert f"speculative skip3 at {boundary}" in names and f"speculative exit at {boundary}" in names
    assert "speculative skip1 c = 8, m = 14" in names and names[-2:] == ["prompt lookup 10", "assistant early exit 8"]
    for schedule in ("heuristic", "expected"):  # k moved by acceptance, at c only
        assert f"speculative skip3 at c = 8, {schedule} k" in names and f"speculative exit at c = 8, {schedule} k" in names
    assert "speculative skip3 at c = 8, expected k + lookup" in names and "speculative exit at c = 8, expected k + lookup" in names
    # the scaled boundary equal to c is not measured twice; a boundary past L - keep_last is left out
    names = [c.name for c in draft_configs(9, (14,), 16, 9, k=4)]
    assert not any("no profile" in n for n in names) and not any("c+2" in n for n in names)
    lookup = {c.name: c for c in draft_configs(8, (14,), 16, 9, k=4, placeholder_tokens={32000})}["prompt lookup 10"]
    assert lookup.generate == {"prompt_lookup_num_tokens": 10, "suppress_tokens": [32000]}


def test_cache_copy_compares_the_two_caches_with_identical_tokens(tmp_path, capsys):
    import json

    from recipes.cache_copy import main

    assert main(["--model", "tiny", "--batch-sizes", "1,2", "--new-tokens", "4", "--runs", "1", "--out",
                 str(tmp_path), "--no-progress"]) == 0
    rows = json.loads((tmp_path / "cache_copy.json").read_text())["rows"]
    assert [(r["batch"], r["cache"]) for r in rows] == [(b, c) for b in (1, 2)
                                                        for c in ("transformers DynamicCache", "reserved (lvlm_skip)")]
    assert all(r["same_tokens"] for r in rows) and all(r["x_faster"] > 0 for r in rows)
    assert "reserved (lvlm_skip)" in (tmp_path / "cache_copy.md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["--batch-sizes", "one", "--out", str(tmp_path / "bad")])
    assert exit_info.value.code == 2 and "--batch-sizes" in capsys.readouterr().err
