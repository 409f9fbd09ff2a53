"""The lvlm-skip console script, in-process: the trace subcommand's outputs and its one-line errors."""

from __future__ import annotations

import json

import pytest

from lvlm_skip.cli import main
from lvlm_skip.cli.trace import FIGURE_NAMES

TRACE_ARGS = ["trace", "--model", "tiny", "--image", "demo", "--prompt", "describe this image .", "--no-progress"]


@pytest.mark.slow
def test_trace_writes_the_trace_and_four_figures(tmp_path):
    out = tmp_path / "run"
    status = main(TRACE_ARGS + ["--out", str(out), "--max-new-tokens", "4", "--watch", "red,black", "--layer", "3", "--top-k", "4"])
    assert status == 0
    for name in ["trace.json", "trace.npz", "summary.txt", "cli_args.json"] + [f"{n}.{ext}" for n in FIGURE_NAMES for ext in ("png", "svg")]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    from lvlm_skip import Trace

    result = Trace.load(out)
    assert result.num_layers == 16 and result.watch_tokens == ["red", "black"] and result.topk_ids.shape[-1] == 4
    assert result.hidden is not None
    summary = (out / "summary.txt").read_text()
    assert summary.startswith("generated: ") and "critical" in summary and "p(3)" in summary
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


def _synthetic_trace(steps=4, layers=5, hidden=8, keep_hidden=True):
    import numpy as np

    from lvlm_skip import Trace

    rng = np.random.default_rng(0)
    mutation = np.zeros((1, steps, layers), dtype=bool)
    mutation[0, 1, 4] = True
    return Trace(
        token_ids=np.arange(steps)[None], lengths=np.array([steps]), tokens=[[f"w{t}" for t in range(steps)]],
        texts=["w0 w1"], token_probs=rng.random((1, steps, layers)), topk_ids=np.zeros((1, steps, layers, 2), dtype=np.int64),
        topk_probs=rng.random((1, steps, layers, 2)), watch_probs=rng.random((1, steps, layers, 2)), jsd=rng.random((1, steps, layers)),
        top1_changed=np.zeros((1, steps, layers), dtype=bool), critical=np.array([[2, 0, 3, 2]])[:, :steps], mutation=mutation,
        watch_tokens=["red", "black"], watch_token_ids=[0, 1], meta={"num_layers": layers, "first_layer": 1, "readout": "raw", "reduction": "mean"},
        hidden=rng.standard_normal((1, steps, layers + 1, hidden)).astype("float16") if keep_hidden else None,
    )


def test_figure_functions_on_plain_arrays(tmp_path):
    import numpy as np

    from lvlm_skip import figures

    trace = _synthetic_trace()
    paths = figures.plot_token_probabilities(trace, tmp_path / "fig2.png", tokens=[0, 2])
    assert [p.name for p in paths] == ["fig2.png", "fig2.svg"] and all(p.stat().st_size > 0 for p in paths)
    assert all(p.is_file() for p in figures.plot_jsd_heatmap(trace, tmp_path / "fig4", highlight_layer=2))
    assert all(p.is_file() for p in figures.plot_tsne_tokens(trace, tmp_path / "fig6"))
    hidden = np.random.default_rng(1).standard_normal((3, 6, 8))
    assert all(p.is_file() for p in figures.plot_tsne_images(hidden, tmp_path / "fig7", labels=["a: x", "b: x", "c: y"]))
    with pytest.raises(ValueError, match="keep_hidden"):
        figures.plot_tsne_tokens(_synthetic_trace(keep_hidden=False), tmp_path / "nope")
    with pytest.raises(ValueError, match="labels"):
        figures.plot_tsne_images(hidden, tmp_path / "nope", labels=["a"])
    with pytest.raises(ValueError, match="row"):
        figures.plot_jsd_heatmap(trace, tmp_path / "nope", row=1)
    with pytest.raises(ValueError, match="tokens"):
        figures.plot_token_probabilities(trace, tmp_path / "nope", tokens=[9])


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    """A saved tiny LLaVA (model + processor) and a saved tiny text-only Llama (model + tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lvlm_skip.tiny import build_tiny_llava, build_word_tokenizer

    root = tmp_path_factory.mktemp("models")
    model, processor = build_tiny_llava(num_layers=2)
    model.save_pretrained(root / "llava")
    processor.save_pretrained(root / "llava")
    tokenizer = build_word_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    llama = LlamaForCausalLM(config)
    assert sum(p.numel() for p in llama.parameters()) < 50_000
    llama.save_pretrained(root / "llama")
    tokenizer.save_pretrained(root / "llama")
    return root


@pytest.mark.slow
def test_local_folders_vision_and_text_only(model_folders, tmp_path, capsys):
    from lvlm_skip import Trace

    assert main(["trace", "--model", str(model_folders / "llava"), "--image", "demo", "--out", str(tmp_path / "v"),
                 "--max-new-tokens", "2", "--no-progress"]) == 0
    assert Trace.load(tmp_path / "v").meta["model_class"] == "LlavaForConditionalGeneration"
    assert (tmp_path / "v" / f"{FIGURE_NAMES[3]}.png").is_file()
    # text-only: no image needed, and no across-images figure
    assert main(["trace", "--model", str(model_folders / "llama"), "--prompt", "what color is the sky ?", "--out", str(tmp_path / "t"),
                 "--max-new-tokens", "2", "--no-progress"]) == 0
    assert Trace.load(tmp_path / "t").meta["model_class"] == "LlamaForCausalLM"
    assert (tmp_path / "t" / f"{FIGURE_NAMES[2]}.png").is_file() and not (tmp_path / "t" / f"{FIGURE_NAMES[3]}.png").exists()
    # a vision-language model without an image is a one-line error
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["trace", "--model", str(model_folders / "llava"), "--out", str(tmp_path / "x"), "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --image" in err[0], err
