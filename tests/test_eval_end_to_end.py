"""``lvlm-skip amber`` / ``caption`` end to end on a real (tiny, random) LLaVA saved to disk: no fake generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lvlm_skip.cli import main
from lvlm_skip.errors import InputError
from lvlm_skip.evaluation.records import read_answers
from lvlm_skip.evaluation.variants import VariantSpec, parse_variant_spec, resolve_variant_options
from tiny_models import make_llava

AMBER_VARIANTS = "none,skip1,skip2,skip3,exit,skip2:online"
#: skip3 from layer 2 keeping the last 5 of 8 layers skips exactly layer 3 at every step.
SKIP3_OPTIONS = {"skip3": {"critical_layer": 2}}
AMBER_ANNOTATIONS = [
    {"id": 1, "type": "generative", "truth": ["dog", "grass"], "hallu": ["cat"]},
    {"id": 2, "type": "generative", "truth": ["man"], "hallu": ["car"]},
    {"id": 3, "type": "generative", "truth": ["cat"], "hallu": ["dog"]},
    {"id": 4, "type": "discriminative-hallucination", "truth": "yes"},
    {"id": 5, "type": "discriminative-attribute-state", "truth": "no"},
    {"id": 6, "type": "discriminative-relation", "truth": "yes"},
]


def _image(seed: int) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(40, 40, 3) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A random 8-layer LLaVA and its processor saved as a local model folder."""
    model, processor = make_llava(8, hidden=64, intermediate=128)
    folder = tmp_path_factory.mktemp("tiny") / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture()
def amber_data(tmp_path: Path) -> dict[str, Path]:
    root, images = tmp_path / "amber", tmp_path / "images"
    (root / "query").mkdir(parents=True)
    images.mkdir()
    (root / "annotations.json").write_text(json.dumps(AMBER_ANNOTATIONS))
    (root / "relation.json").write_text(json.dumps({w: [] for w in ("dog", "grass", "cat", "man", "car")}))
    (root / "safe_words.txt").write_text("sky\n")
    queries = {a["id"]: {"id": a["id"], "image": f"AMBER_{a['id']}.png",
                         "query": "Describe this image." if a["type"] == "generative" else "Is there a dog?"}
               for a in AMBER_ANNOTATIONS}
    files = {"all": [1, 2, 3, 4, 5, 6], "generative": [1, 2, 3], "discriminative": [4, 5, 6],
             "discriminative-existence": [4], "discriminative-attribute": [5], "discriminative-relation": [6]}
    for name, ids in files.items():
        (root / "query" / f"query_{name}.json").write_text(json.dumps([queries[i] for i in ids]))
    for i in queries:
        _image(i).save(images / f"AMBER_{i}.png")
    return {"root": root, "images": images, "out": tmp_path / "out"}


def _amber_args(data: dict[str, Path], model: Path | str, *extra: str) -> list[str]:
    return ["amber", "--model", str(model), "--amber-root", str(data["root"]), "--image-dir", str(data["images"]),
            "--out", str(data["out"]), "--backend", "offline", "--max-new-tokens", "6", "--no-progress", *extra]


@pytest.fixture()
def coco(tmp_path: Path) -> Path:
    tmp_path = tmp_path / "coco"
    (tmp_path / "images").mkdir(parents=True)
    for i in (1, 2, 3):
        _image(10 + i).save(tmp_path / "images" / f"{i}.png")
    caps = {"images": [{"id": i, "file_name": f"{i}.png"} for i in (1, 2, 3)],
            "annotations": [{"image_id": 1, "caption": "A dog on the grass."},
                            {"image_id": 2, "caption": "A man next to a car."},
                            {"image_id": 3, "caption": "A cat on a bed."}]}
    (tmp_path / "captions.json").write_text(json.dumps(caps))
    return tmp_path


def _caption_args(root: Path, model: Path | str, *extra: str) -> list[str]:
    return ["caption", "--model", str(model), "--captions", str(root / "captions.json"), "--image-dir",
            str(root / "images"), "--out", str(root / "out"), "--metrics", "bleu,rouge", "--max-new-tokens", "6",
            "--device-map", "auto", "--no-progress", *extra]


@pytest.mark.slow
def test_amber_end_to_end_real_model(model_dir, amber_data, tmp_path, capsys):
    options = tmp_path / "options.json"
    options.write_text(json.dumps(SKIP3_OPTIONS))
    argv = _amber_args(amber_data, model_dir, "--variants", AMBER_VARIANTS, "--task", "a",
                       "--variant-options", str(options))
    assert main(argv) == 0
    printed = capsys.readouterr().out
    print(printed)  # the report table, visible with -s
    report = json.loads((amber_data["out"] / "amber_a.json").read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    assert list(rows) == AMBER_VARIANTS.split(",")
    for label, row in rows.items():
        assert row["errors"] == 0 and row["n"] == 6, (label, row)
        assert row["tokens_per_s"] > 0 and row["speedup"] > 0
        assert row["layers_skipped"] is not None
    assert rows["none"]["speedup"] == 1.0 and rows["none"]["layers_skipped"] == 0.0
    assert rows["skip3"]["layers_skipped"] == 1.0  # layer 3, at every step
    assert report["meta"]["variants"]["skip2:online"]["mode"] == "online"
    assert report["meta"]["run"]["model_sha256"] and report["meta"]["run"]["max_new_tokens"] == 6
    assert "layers_skipped" in printed and "skip2:online" in printed
    records = read_answers(amber_data["out"] / "responses.jsonl")
    assert len(records) == 6 * 6 and all(0 < r.new_tokens <= 6 for r in records)


@pytest.mark.slow
def test_caption_end_to_end_real_model(model_dir, coco, capsys):
    argv = _caption_args(coco, model_dir, "--variants", "none,skip3,exit:online",
                         "--variant-options", json.dumps(SKIP3_OPTIONS))
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = {r["variant"]: r for r in json.loads((coco / "out" / "caption_report.json").read_text())["rows"]}
    assert list(rows) == ["none", "skip3", "exit:online"]
    assert all(r["errors"] == 0 and r["n"] == 3 and r["tokens_per_s"] > 0 for r in rows.values())
    assert rows["none"]["speedup"] == 1.0 and rows["none"]["layers_skipped"] == 0.0
    assert rows["skip3"]["layers_skipped"] == 1.0
    assert "layers_skipped" in printed and "Bleu_1" in printed


def test_parse_variant_spec():
    assert parse_variant_spec("skip2:online") == VariantSpec("skip2:online", "skip2", "online")
    assert parse_variant_spec(" skip1 ", "online") == VariantSpec("skip1", "skip1", "online")
    with pytest.raises(InputError, match="unknown variant 'skip9'"):
        parse_variant_spec("skip9")
    with pytest.raises(InputError, match="unknown mode 'fast'"):
        parse_variant_spec("skip2:fast")
    specs = [parse_variant_spec("skip1"), parse_variant_spec("skip1:online")]
    resolved = resolve_variant_options(specs, {"skip1": {"critical_layer": 18, "mutation_layers": [27, 28]},
                                               "skip1:online": {"critical_layer": 17}})
    assert resolved == {"skip1": {"critical_layer": 18, "mutation_layers": (27, 28)},
                        "skip1:online": {"critical_layer": 17, "mutation_layers": (27, 28)}}


@pytest.mark.parametrize("extra, needle", [
    (["--variants", "none,skip9"], "unknown variant 'skip9'"),
    (["--variants", "none,skip2:fast"], "unknown mode 'fast'"),
    (["--variants", "none,none"], "duplicate"),
    (["--variants", "skip3", "--variant-options", '{"skip3": {"critical": 2}}'], "unknown option"),
    (["--variants", "skip3", "--variant-options", "{oops"], "invalid JSON"),
    (["--variants", "skip3", "--variant-options", '{"skip_3": {}}'], "skip_3"),
])
def test_bad_variant_specs_exit_2_one_line(model_dir, amber_data, coco, capsys, extra, needle):
    for argv in (_amber_args(amber_data, model_dir, *extra), _caption_args(coco, model_dir, *extra)):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("lvlm-skip: error: ") and needle in err[0], err


@pytest.mark.slow
def test_layer_out_of_range_exit_2_before_any_answer(model_dir, coco, capsys):
    argv = _caption_args(coco, model_dir, "--variants", "none,skip3",
                         "--variant-options", '{"skip3": {"critical_layer": 99}}')
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("lvlm-skip: error: ") and "skip3" in last and "99" in last
    assert not read_answers(coco / "out" / "responses.jsonl")


@pytest.mark.slow
def test_unsupported_model_exit_2(amber_data, coco, tmp_path, capsys):
    from transformers import BertConfig, BertModel

    bert = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, vocab_size=99)).save_pretrained(bert)
    for argv in (_amber_args(amber_data, bert, "--variants", "none,skip2"), _caption_args(coco, bert, "--variants", "none")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "unsupported model" in err.strip().splitlines()[-1] and "Traceback" not in err


def test_speculative_variant_specs():
    """``speculative:DRAFT`` (default skip3): the draft goes into the options (and so the fingerprint); no mode."""
    from lvlm_skip.evaluation.variants import plan_variants, variant_fingerprint, wrap_arguments

    plan = plan_variants("none,speculative,speculative:layers", variant_options=json.dumps(
        {"speculative": {"k": 3}, "speculative:layers": {"layers": [7, 8]}}))  # the name's entry serves both
    assert plan.spec("speculative").draft == "skip3" and plan.spec("speculative:layers").draft == "layers"
    assert wrap_arguments(plan, "speculative:layers") == {"variant": "speculative", "layers": (7, 8), "k": 3,
                                                          "draft": "layers"}
    fingerprint = variant_fingerprint(plan, "speculative", None)
    assert fingerprint["mode"] is None and fingerprint["options"] == {"draft": "skip3", "k": 3}
    for specs, options, needle in [("speculative:skip2", None, "unknown draft 'skip2'"),
                                   ("speculative:exit", {"speculative:exit": {"draft": "skip1"}}, "draft 'skip1'"),
                                   ("speculative", {"speculative": {"k": 0}}, "`k`"),
                                   ("speculative", {"speculative": {"alpha": 1}}, "unknown option")]:
        with pytest.raises(InputError, match=needle):
            plan_variants(specs, variant_options=json.dumps(options) if options else None)


def test_speculative_answers_equal_the_stock_models_in_amber(model_dir, amber_data, capsys):
    """Through the harness (batch 4 asked: speculative rows go one at a time): every answer of a speculative variant
    is the stock model's, token for token (the layers draft behind an n-gram lookup)."""
    options = {"speculative:skip3": {"critical_layer": 2, "keep_last": 1},
               "speculative:layers": {"layers": [4, 7], "lookup": 6, "schedule": "expected"}}
    argv = _amber_args(amber_data, model_dir, "--variants", "none,speculative:skip3,speculative:layers", "--task", "a",
                       "--variant-options", json.dumps(options), "--batch-size", "4")
    assert main(argv) == 0
    capsys.readouterr()
    by_variant: dict = {}
    for record in read_answers(amber_data["out"] / "responses.jsonl"):
        by_variant.setdefault(record.variant, {})[record.id] = (record.response, record.new_tokens)
    assert set(by_variant) == {"none", "speculative:skip3", "speculative:layers"}
    assert by_variant["speculative:skip3"] == by_variant["none"] == by_variant["speculative:layers"]
