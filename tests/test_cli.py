"""The lvlm-skip console script, in-process: the trace subcommand's outputs and its one-line errors."""

from __future__ import annotations

import json

import pytest

from lvlm_skip.cli import FIGURE_NAMES, main

TRACE_ARGS = ["trace", "--model", "tiny", "--image", "demo", "--prompt", "describe this image .", "--no-progress"]


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
