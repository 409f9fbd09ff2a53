"""The lvlm-skip console script, in-process: the trace subcommand's outputs and its one-line errors."""

from __future__ import annotations

import json

import pytest

from lvlm_skip.cli import main
from lvlm_skip.cli.trace import FIGURE_NAMES
from tiny_models import make_llama, make_llava

TRACE_ARGS = ["trace", "--model", "tiny", "--image", "demo", "--prompt", "describe this image .", "--no-progress"]


ANSWER_FIGURES = [n for n in FIGURE_NAMES if not n.startswith(("fig3", "fig7"))]


@pytest.mark.slow
def test_trace_writes_the_trace_and_the_answer_figures(tmp_path, caplog):
    import logging

    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="lvlm_skip"):
        status = main(TRACE_ARGS + ["--out", str(out), "--max-new-tokens", "4", "--watch", "red,black", "--layer", "3", "--top-k", "4"])
    assert status == 0
    # without a progress bar: one line per finished stage (stage, items, seconds)
    stages = [r.getMessage().split(" in ")[0] for r in caplog.records if " done: " in r.getMessage()]
    assert stages == ["load done: 1 model", "trace done: 4 token(s)", f"figures done: {2 * len(ANSWER_FIGURES)} file(s)"]
    for name in ["trace.json", "trace.npz", "summary.txt", "cli_args.json"] + [f"{n}.{ext}" for n in ANSWER_FIGURES for ext in ("png", "svg")]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not (out / "fig3_contrast.png").exists() and not (out / "fig7_tsne_images.png").exists()
    from lvlm_skip import Trace

    result = Trace.load(out)
    assert result.num_layers == 16 and result.watch_tokens == ["red", "black"] and result.topk_ids.shape[-1] == 4
    assert result.hidden is not None and result.competitor_ids is not None
    assert result.meta["readout"] == "normed" and result.meta["reduction"] == "sum"
    summary = (out / "summary.txt").read_text()
    assert summary.startswith("generated: ") and "critical" in summary and "p(3)" in summary and "competitors" in summary
    assert json.loads((out / "cli_args.json").read_text())["layer"] == 3


def test_help_lists_the_trace_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "trace" in capsys.readouterr().out


def _bert_folder(path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_image", "does not exist"),
        ("corrupt_image", "cannot read image"),
        ("missing_model", "does not exist"),
        ("bogus_config", "cannot read the config"),
        ("unsupported", "unsupported model BertLMHeadModel"),
        ("top_k", "--top-k 1000 is larger than the vocabulary size"),
        ("layer_high", "--layer: layer 17 is out of range"),
        ("layer_zero", "--layer: layer 0 is out of range"),
    ],
)
def test_bad_input_exits_2_with_one_line(case, message, tmp_path, capsys):
    model, image, extra = "tiny", "demo", []
    if case == "missing_image":
        image = str(tmp_path / "nope.png")
    elif case == "corrupt_image":
        image = str(tmp_path / "corrupt.png")
        (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image" * 4)
    elif case == "missing_model":
        model = str(tmp_path / "no_model")
    elif case == "bogus_config":
        (tmp_path / "bogus").mkdir()
        (tmp_path / "bogus" / "config.json").write_text('{"model_type": "no-such-architecture", "hidden_size": 3}')
        model = str(tmp_path / "bogus")
    elif case == "unsupported":
        model = str(_bert_folder(tmp_path / "bert"))
        capsys.readouterr()  # the shard-writing progress bar
    elif case == "top_k":
        extra = ["--top-k", "1000"]
    elif case == "layer_high":
        extra = ["--layer", "17"]
    elif case == "layer_zero":
        extra = ["--layer", "0"]
    with pytest.raises(SystemExit) as info:
        main(["trace", "--model", model, "--image", image, "--out", str(tmp_path / "out"), "--max-new-tokens", "2", *extra])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    if case == "unsupported":  # transformers' own load report of the Bert weights comes first
        assert not any("Traceback" in line for line in err)
        err = err[-1:]
    assert len(err) == 1, err
    assert err[0].startswith("lvlm-skip: error: ") and message in err[0], err[0]


def test_corrupt_json_config_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(SystemExit) as info:
        main(["trace", "--model", str(tmp_path / "broken"), "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lvlm-skip: error: cannot read the config"), err


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    """A saved tiny LLaVA (model + processor) and a saved tiny text-only Llama (model + tokenizer)."""
    from lvlm_skip.inputs.builtin_models import build_word_tokenizer

    root = tmp_path_factory.mktemp("models")
    model, processor = make_llava(2)
    model.save_pretrained(root / "llava")
    processor.save_pretrained(root / "llava")
    tokenizer = build_word_tokenizer()
    llama = make_llama(2, vocab=len(tokenizer), pad=tokenizer.pad_token_id, eos=tokenizer.eos_token_id, limit=50_000)
    llama.save_pretrained(root / "llama")
    tokenizer.save_pretrained(root / "llama")
    return root


@pytest.mark.slow
def test_local_folders_vision_and_text_only(model_folders, tmp_path, capsys):
    from lvlm_skip import Trace

    assert main(["trace", "--model", str(model_folders / "llava"), "--image", "demo", "--out", str(tmp_path / "v"),
                 "--max-new-tokens", "2", "--no-progress"]) == 0
    assert Trace.load(tmp_path / "v").meta["model_class"] == "LlavaForConditionalGeneration"
    assert (tmp_path / "v" / "fig6_tsne_tokens.png").is_file()
    # text-only: no image needed, and no across-images figure
    assert main(["trace", "--model", str(model_folders / "llama"), "--prompt", "what color is the sky ?", "--out", str(tmp_path / "t"),
                 "--max-new-tokens", "2", "--no-progress"]) == 0
    assert Trace.load(tmp_path / "t").meta["model_class"] == "LlamaForCausalLM"
    assert (tmp_path / "t" / "fig6_tsne_tokens.png").is_file() and not (tmp_path / "t" / "fig7_tsne_images.png").exists()
    # a vision-language model without an image is a one-line error
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["trace", "--model", str(model_folders / "llava"), "--out", str(tmp_path / "x"), "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --image" in err[0], err
    # --images needs a vision-language model
    with pytest.raises(SystemExit) as info:
        main(["trace", "--model", str(model_folders / "llama"), "--images", f"{_demo_png(tmp_path)},{_demo_png(tmp_path)}",
              "--out", str(tmp_path / "y"), "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "text-only: --images needs a vision-language model" in err[0], err


def _demo_png(folder):
    from lvlm_skip.inputs.builtin_models import demo_image

    path = folder / "demo.png"
    if not path.exists():
        demo_image(64).save(path)
    return path


def test_paper_choices_and_contrast(tmp_path):
    from lvlm_skip import Trace

    out = tmp_path / "paper"
    assert main(TRACE_ARGS + ["--out", str(out), "--max-new-tokens", "3", "--paper", "--contrast", "0:red,black",
                              "--contrast", "1:cup,dog", "--competitor-window", "12", "--critical", "5"]) == 0
    result = Trace.load(out)
    assert result.meta["readout"] == "raw" and result.meta["reduction"] == "paper" and result.jsd.dtype.name == "float64"
    assert result.meta["choices"] == {"readout": "raw", "reduction": "paper", "normalize": "layer", "axis": "paper",
                                      "tsne_scale": "maxabs", "last_state": "normed"}
    assert result.watch_tokens == ["red", "black", "cup", "dog"] and (result.window_start == 12).all()
    assert all((out / f"{name}.png").is_file() for name in [*ANSWER_FIGURES, "fig3_contrast"])
    # an explicit option wins over --paper
    assert main(TRACE_ARGS + ["--out", str(tmp_path / "mixed"), "--max-new-tokens", "2", "--paper", "--readout", "normed"]) == 0
    assert Trace.load(tmp_path / "mixed").meta["readout"] == "normed"


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory):
    from lvlm_skip.scenes import generate

    folder = tmp_path_factory.mktemp("scenes")
    for scene in generate("test", 0, 3):
        scene.image.save(folder / f"scene{scene.index}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_images_make_fig7(scene_folder, tmp_path):
    from lvlm_skip import Trace

    out = tmp_path / "fig7"
    assert main(["trace", "--model", "tiny", "--images", str(scene_folder), "--prompt", "what color is the cup ?",
                 "--out", str(out), "--max-new-tokens", "2", "--no-progress", "--paper"]) == 0
    result = Trace.load(out)
    assert result.token_ids.shape[0] == 3 and result.meta["images"][0].endswith("scene0.png")
    assert (out / "fig7_tsne_images.png").is_file() and not (out / "fig2_token_probabilities.png").exists()
    summary = (out / "summary.txt").read_text().splitlines()
    assert len(summary) == 2 + 3 and summary[2].startswith("scene0.png")
    # a text file of paths, relative to its folder
    (scene_folder / "list.txt").write_text("# two scenes\nscene2.png\n\nscene1.png\n")
    assert main(["trace", "--model", "tiny", "--images", str(scene_folder / "list.txt"), "--prompt", "what color is it ?",
                 "--out", str(tmp_path / "list"), "--max-new-tokens", "1", "--no-progress"]) == 0
    assert [p.rsplit("/", 1)[-1] for p in Trace.load(tmp_path / "list").meta["images"]] == ["scene2.png", "scene1.png"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--images", "{missing}"], "--images '{missing}' does not exist"),
        (["--images", "{empty}"], "is a folder without image files"),
        (["--images", "{one}"], "names 1 image(s); at least 2 are needed"),
        (["--images", "{one},{missing}"], "does not exist"),
        (["--images", "{list}"], "does not exist"),
        (["--images", "{one},{one}", "--image", "demo"], "not allowed with argument"),
        (["--images", "{one},{one}", "--contrast", "a,b"], "--contrast needs --image"),
        (["--image", "demo", "--contrast", "camera"], "expected [STEP:]CORRECT,HALLUCINATED"),
        (["--image", "demo", "--contrast", "red,black,cup"], "expected [STEP:]CORRECT,HALLUCINATED"),
        (["--image", "demo", "--contrast", ":red,black"], "expected [STEP:]CORRECT,HALLUCINATED"),
        (["--image", "demo", "--contrast=-1:red,black"], "STEP counts from 0"),
        (["--image", "demo", "--contrast", "9:red,black"], "--contrast step 9 is out of range: the answer has 2 tokens"),
        (["--image", "demo", "--contrast", "zebra:red,black"], "the answer never emitted 'zebra'"),
        (["--image", "demo", "--contrast", "0:camera,red"], "watch word 'camera' is not in the vocabulary"),
        (["--image", "demo", "--watch", "red,camera"], "watch word 'camera' is not in the vocabulary: the tokenizer maps it to <unk>"),
        (["--image", "demo", "--competitor-window", "17"], "--competitor-window: layer 17 is out of range"),
        (["--image", "demo", "--critical", "17"], "--critical: layer 17 is out of range"),
        (["--image", "demo", "--reduction", "mean"], "invalid choice: 'mean'"),
    ],
)
def test_new_options_bad_input_one_line(extra, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    one = _demo_png(tmp_path)
    (tmp_path / "list.txt").write_text(f"{one}\nnope.png\n")
    names = {"missing": str(tmp_path / "nope"), "empty": str(tmp_path / "empty"), "one": str(one), "list": str(tmp_path / "list.txt")}
    extra = [e.format(**names) for e in extra]
    message = message.format(**names)
    with pytest.raises(SystemExit) as info:
        main(["trace", "--model", "tiny", "--out", str(tmp_path / "out"), "--max-new-tokens", "2", "--no-progress", *extra])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("lvlm-skip: error: ") and message in err[0], err[0]


def test_the_cli_names_the_same_built_in_models_as_the_loader():
    """The CLI keeps its own copy so that parsing never imports torch; it must not drift from the loader's."""
    from lvlm_skip.cli import options
    from lvlm_skip.inputs.models import BUILTIN_MODELS

    assert options.BUILTIN_MODELS == BUILTIN_MODELS
