"""``lvlm-skip pope --protocol authors``: each peer asked, decoded and read as its released POPE script does
(VCD: suffix, sampling, beta 0.2, its substring reading; DeCo: 5 greedy tokens, its yes-word reading),
the other variants as the harness; recorded in the fingerprint and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lvlm_skip
from lvlm_skip.benchmarks.pope.protocols import (AUTHOR_PROTOCOLS, HARNESS, apply_protocols, deco_answer,
                                                 official_answer, variant_protocols, vcd_answer)
from lvlm_skip.cli import main
from lvlm_skip.errors import InputError
from lvlm_skip.evaluation.variants import Decoding, plan_variants

MODEL = Path(__file__).resolve().parents[1] / "recipes" / "models" / "scene-llava"


# ------------------------------------------------------------------------------------------ readings


@pytest.mark.parametrize("text, label, expected", [
    ("Yes", "yes", "yes"), ("yes, there is", "yes", "yes"), ("No", "yes", "no"), ("eyes", "yes", "yes"),
    # label no: 'no' anywhere counts as a correct "no", so "I don't know" and "Not sure" do, and "Yes" is a "yes"
    ("No", "no", "no"), ("I don't know", "no", "no"), ("Not sure", "no", "no"), ("Yes", "no", "yes"),
    # ... while the same "I don't know" under label yes is a "no", and "Nope" a "no"
    ("I don't know", "yes", "no"), ("  YES  ", "yes", "yes"),
])
def test_vcd_reading_is_its_label_conditioned_substring_rule(text, label, expected):
    assert vcd_answer(text, label) == expected


@pytest.mark.parametrize("text, expected", [
    ("Yes", "yes"), ("yes.", "yes"), ("Yes, there is a cat", "yes"), ("YES!", "yes"), ("eyes", "no"),
    ("No", "no"), ("", "no"), ("yesterday", "no"), ("Well-yes", "yes"),
])
def test_deco_reading_is_yes_as_a_word(text, expected):
    assert deco_answer(text) == expected and deco_answer(text, "no") == expected


def test_the_readings_disagree_where_the_scripts_do():
    # POPE's rule: no negation word -> "yes"; DeCo: no "yes" word -> "no"; VCD: by label
    assert official_answer("There is a cat") == "yes" and deco_answer("There is a cat") == "no"
    # POPE's rule is case-sensitive ("Not" is not "not"); VCD's lower-cases and finds "no" in it
    assert official_answer("Not sure") == "yes" and vcd_answer("Not sure", "no") == "no"


# ---------------------------------------------------------------------------------- plans and options


def test_harness_changes_nothing_and_authors_sets_the_peers_only():
    plan = plan_variants("none,skip2,deco,vcd")
    harness = variant_protocols(plan, "harness")
    assert all(p is HARNESS for p in harness.values()) and apply_protocols(plan, harness).decoding == {}
    protocols = variant_protocols(plan, "authors")
    assert protocols["none"] is HARNESS and protocols["skip2"] is HARNESS
    adapted = apply_protocols(plan, protocols)
    assert adapted.options["vcd"] == {"alpha": 1.0, "beta": 0.2, "noise_step": 500}
    assert adapted.options["deco"] == {"alpha": 0.6, "top_p": 0.9, "top_k": 20}
    assert adapted.decoding["vcd"] == Decoding(sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                               max_new_tokens=1024, seed=55)
    assert adapted.decoding["deco"] == Decoding(max_new_tokens=5) and "skip2" not in adapted.decoding


def test_an_option_that_the_protocol_fixes_is_refused_in_one_line():
    plan = plan_variants("vcd", variant_options='{"vcd": {"beta": 0.5}}')
    with pytest.raises(InputError, match=r"^variant 'vcd': --protocol authors fixes beta \(DAMO-NLP-SG/VCD") as caught:
        apply_protocols(plan, variant_protocols(plan, "authors"))
    assert "\n" not in str(caught.value)
    # an option it leaves free is kept
    free = plan_variants("vcd", variant_options='{"vcd": {"seed": 3}}')
    assert apply_protocols(free, variant_protocols(free, "authors")).options["vcd"]["seed"] == 3
    with pytest.raises(InputError, match="unknown --protocol 'vcd'"):
        variant_protocols(plan, "vcd")
    from lvlm_skip.benchmarks.pope.protocols import PROTOCOLS
    from lvlm_skip.cli import pope as pope_command

    assert pope_command.PROTOCOLS == PROTOCOLS  # the subcommand's repeated choices


def test_item_seeds_are_stable_and_differ_by_item_and_seed():
    decoding = AUTHOR_PROTOCOLS["vcd"].decoding
    assert decoding.item_seed("random:3") == decoding.item_seed("random:3")
    assert len({decoding.item_seed(f"random:{i}") for i in range(50)}) == 50
    assert Decoding(sample=True, seed=1).item_seed(7) != Decoding(sample=True, seed=2).item_seed(7)
    assert Decoding(sample=True, seed=1).item_seed(7) != Decoding(sample=True, seed=1).item_seed("7")
    with pytest.raises(InputError):
        Decoding(sample=True, top_p=0)
    with pytest.raises(InputError):
        Decoding(max_new_tokens=0)


# -------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from lvlm_skip.scenes.export import export

    return export(tmp_path_factory.mktemp("protocol") / "bench", 3, 0)


def _answers(out: Path) -> dict:
    return {(r["variant"], str(r["id"])): r for r in map(json.loads, open(out / "responses.jsonl"))}


def _pope(bench: Path, out: Path, *extra: str) -> int:
    return main(["pope", "--pope-root", str(bench / "pope"), "--split", "random", "--image-dir", str(bench / "images"),
                 "--model", str(MODEL), "--limit", "4", "--device", "cpu", "--no-progress", "--out", str(out), *extra])


def _direct(image_path: Path, prompt: str, variant: str, max_new_tokens: int, seed: int | None = None, **kwargs) -> str:
    """The answer of a plain ``wrap`` + ``generate`` call: the reference the protocol run must equal."""
    from PIL import Image

    from lvlm_skip.inputs.models import chat_prompt, encode_inputs, load_model

    model, processor = load_model(str(MODEL), dtype=torch.float32, device=torch.device("cpu"))
    if variant != "none":
        lvlm_skip.wrap(model, variant=variant, **kwargs.pop("options", {}))
    inputs = encode_inputs(processor, [chat_prompt(processor, prompt, with_image=True)],
                           [Image.open(image_path).convert("RGB")], model)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, **kwargs)
    return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


@pytest.mark.slow
def test_authors_protocol_runs_each_peer_as_its_script(bench, tmp_path, capsys):
    out = tmp_path / "authors"
    assert _pope(bench, out, "--variants", "none,deco,vcd", "--protocol", "authors", "--batch-size", "3") == 0
    answers = _answers(out)
    questions = [json.loads(line) for line in open(bench / "pope" / "scenes_pope_random.json")][:4]
    vcd = AUTHOR_PROTOCOLS["vcd"]
    for q in questions[:2]:
        image = bench / "images" / q["image"]
        deco = _direct(image, q["text"], "deco", 5, do_sample=False)
        assert answers[("deco", str(q["question_id"]))]["response"] == deco
        assert answers[("deco", str(q["question_id"]))]["new_tokens"] <= 5
        sampled = _direct(image, q["text"] + vcd.prompt_suffix, "vcd", 1024, seed=vcd.decoding.item_seed(q["question_id"]),
                          options=dict(vcd.options), do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
        assert answers[("vcd", str(q["question_id"]))]["response"] == sampled
    # the variants without a published protocol are the harness's, answer for answer
    harness = tmp_path / "harness"
    assert _pope(bench, harness, "--variants", "none,deco,vcd") == 0
    plain = _answers(harness)
    assert all(plain[("none", str(q["question_id"]))]["response"] == answers[("none", str(q["question_id"]))]["response"]
               for q in questions)
    # the fingerprint and the report say what each variant followed
    run = json.loads((out / "run.json").read_text())
    assert run["run"]["protocols"]["vcd"]["reading"] == "vcd" and run["run"]["protocols"]["none"]["name"] == "harness"
    assert run["variants"]["vcd"]["decoding"]["sample"] is True and "decoding" not in run["variants"]["none"]
    assert "decoding" not in json.loads((harness / "run.json").read_text())["variants"]["vcd"]
    report = json.loads((out / "pope_random.json").read_text())
    assert report["meta"]["protocols"]["deco"]["source"].startswith("zjunlp/Deco")
    details = json.loads((out / "pope_random_details.json").read_text())["answers"]["vcd"]["random"]
    assert all(d["pope_answer"] == vcd_answer(d["answer"], d["label"]) for d in details)
    # a folder made under one protocol is not resumed under the other
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        _pope(bench, out, "--variants", "none,deco,vcd")
    assert stopped.value.code == 2
    assert "holds results made with protocols=" in capsys.readouterr().err


@pytest.mark.slow
def test_sampled_answers_do_not_depend_on_the_batch_or_on_resuming(bench, tmp_path):
    assert _pope(bench, tmp_path / "b1", "--variants", "vcd", "--protocol", "authors", "--batch-size", "1") == 0
    assert _pope(bench, tmp_path / "b4", "--variants", "vcd", "--protocol", "authors", "--batch-size", "4") == 0
    first, batched = _answers(tmp_path / "b1"), _answers(tmp_path / "b4")
    assert {k: r["response"] for k, r in first.items()} == {k: r["response"] for k, r in batched.items()}
    # drop two answers and resume: the same samples come back
    lines = (tmp_path / "b1" / "responses.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "b1" / "responses.jsonl").write_text("".join(lines[:2]))
    assert _pope(bench, tmp_path / "b1", "--variants", "vcd", "--protocol", "authors") == 0
    assert {k: r["response"] for k, r in _answers(tmp_path / "b1").items()} == \
        {k: r["response"] for k, r in first.items()}
