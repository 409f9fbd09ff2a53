"""Batched evaluation: the same answers at batch 1, 3 and 8, for every variant and peer; batches written
as they end; the batch size outside the fingerprint; the automatic size and the out-of-memory split.

The identity check runs the shipped scene-llava (a trained model, so rows end at their own
end-of-sequence token, at different lengths) in float32, on captions and yes/no questions mixed so
that one batch holds rows of 2 to 22 new tokens.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lvlm_skip.evaluation import generation
from lvlm_skip.evaluation.generation import GenerationSettings, ModelGenerator
from lvlm_skip.evaluation.runner import RunSettings, batches, evaluate
from lvlm_skip.evaluation.task import EvalItem
from lvlm_skip.evaluation.variants import plan_variants
from lvlm_skip.tracing import row_lengths

MODEL = Path(__file__).resolve().parents[1] / "recipes" / "models" / "scene-llava"
#: every variant in both modes, and the peers
LABELS = ("none,skip1,skip2,skip3,exit,skip1:online,skip2:online,skip3:online,exit:online,dola,deco,vcd")
QUESTIONS = ["Describe this image.", "Is there a cup in the image?", "Is there a boat in the image?",
             "Describe this image in detail.", "Is there an apple in the image?", "Is there a car in the image?",
             "Describe this image.", "Is there a clock in the image?"]


@pytest.fixture(scope="module")
def scene_generator():
    from lvlm_skip.inputs.models import load_model
    from lvlm_skip.scenes import make_scene

    model, processor = load_model(str(MODEL), dtype=torch.float32, device=torch.device("cpu"))
    plan = plan_variants(LABELS)
    images = [make_scene("test", 0, i).image for i in range(len(QUESTIONS))]
    return ModelGenerator(model, processor, plan, max_new_tokens=24), images


def _answers(gen: ModelGenerator, images, label: str, size: int) -> list[tuple]:
    out = []
    for start in range(0, len(QUESTIONS), size):
        out += gen.generate_batch(images[start:start + size], QUESTIONS[start:start + size], label)
    return [(a.text, a.new_tokens, round(a.layers_skipped, 9)) for a in out]


@pytest.mark.parametrize("label", LABELS.split(","))
def test_same_answers_at_batch_1_3_and_8(scene_generator, label):
    gen, images = scene_generator
    alone = _answers(gen, images, label, 1)
    assert _answers(gen, images, label, 3) == alone
    assert _answers(gen, images, label, 8) == alone
    lengths = [n for _, n, _ in alone]
    assert len(set(lengths)) >= 3 and min(lengths) < 24, "rows must end at different lengths for the check to bite"
    if label.split(":")[0] in ("skip1", "skip2", "skip3"):
        skipped = [s for _, _, s in alone]
        assert max(skipped) > 0 and len(set(skipped)) > 1, "rows of a batch must skip different layers"


def test_row_lengths_cut_at_the_first_end_of_sequence():
    new = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [2, 2, 2, 2, 2], [3, 9, 9, 9, 9]])
    assert row_lengths(new, frozenset({2})) == [3, 5, 1, 5]
    assert row_lengths(new, frozenset({2, 3})) == [3, 5, 1, 1]
    assert row_lengths(new, frozenset()) == [5, 5, 5, 5]


def test_batches_sort_by_length_and_keep_ties_in_order():
    items = [EvalItem(id=i, image="x.png", prompt=p) for i, p in enumerate(["ccc", "a", "bb", "a", "dddd"])]
    cut = batches(items, 2, lambda item: len(item.prompt))
    assert [[item.id for item in batch] for batch in cut] == [[1, 3], [2, 0], [4]]


def test_batch_size_is_checked():
    with pytest.raises(Exception, match="batch_size must be a positive integer"):
        GenerationSettings(model="m", device="cpu", dtype="float32", device_map=None, max_new_tokens=4, batch_size=0)


class _RecordingGenerator:
    """Answers from the prompt; records each batch's prompts; can fail on a given batch."""

    def __init__(self, fail_at: int | None = None):
        self.batches: list[list[str]] = []
        self.fail_at = fail_at

    def prompt_length(self, prompt: str) -> int:
        return len(prompt)

    def __call__(self, image, prompt, label):
        return self.generate_batch([image], [prompt], label)[0]

    def generate_batch(self, images, prompts, label):
        if self.fail_at is not None and len(self.batches) == self.fail_at:
            raise RuntimeError("simulated crash in a batch")
        self.batches.append(list(prompts))
        return [generation.Generation(text="Yes" if "dog" in p else "No", new_tokens=2, seconds=0.01,
                                      layers_skipped=0.0) for p in prompts]


def _pope_run(tmp_path: Path, bench: Path, out: str, batch_size: int | None, limit: int | None = None):
    from lvlm_skip.benchmarks.pope.task import PopeTask
    from lvlm_skip.inputs.paths import check_output_dir

    task = PopeTask({"random": bench / "pope" / "scenes_pope_random.json"})
    settings = RunSettings(out=check_output_dir(tmp_path / out), plan=plan_variants("none,skip1"), image_dir=bench / "images",
                           generation=GenerationSettings(model="tiny", device="cpu", dtype="float32", device_map=None,
                                                         max_new_tokens=4, batch_size=batch_size),
                           builtin_model=True, limit=limit)
    return evaluate(task, settings)


@pytest.fixture()
def bench(tmp_path):
    from lvlm_skip.scenes.export import export

    return export(tmp_path / "bench", 2, 0)


def test_runner_batches_per_variant_and_resumes_across_batch_sizes(tmp_path, bench, monkeypatch):
    fake = _RecordingGenerator()
    monkeypatch.setattr(generation, "load_generator", lambda *a, **k: fake)
    report = _pope_run(tmp_path, bench, "run", batch_size=4, limit=6)
    # per variant: 6 items in batches of 4 and 2, each sorted by prompt length
    assert [len(b) for b in fake.batches] == [4, 2, 4, 2]
    for batch in fake.batches:
        assert [len(p) for p in batch] == sorted(len(p) for p in batch)
    first = {(r["variant"], r["id"]): r["response"] for r in map(json.loads, open(tmp_path / "run" / "responses.jsonl"))}
    # the same folder resumes at another batch size (the size is not in the fingerprint): only the new items run
    fake.batches.clear()
    _pope_run(tmp_path, bench, "run", batch_size=3, limit=9)
    assert [len(b) for b in fake.batches] == [3, 3]
    fingerprint = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "batch_size" not in json.dumps(fingerprint)
    rows = {(r["variant"], r["id"]): r["response"] for r in map(json.loads, open(tmp_path / "run" / "responses.jsonl"))}
    assert len(rows) == 18 and all(rows[k] == v for k, v in first.items())
    assert report is not None and [r.variant for r in report.rows] == ["none", "skip1"]


def test_finished_batches_are_on_disk_when_a_later_batch_crashes(tmp_path, bench, monkeypatch):
    monkeypatch.setattr(generation, "load_generator", lambda *a, **k: _RecordingGenerator(fail_at=2))
    with pytest.raises(RuntimeError, match="simulated crash"):
        _pope_run(tmp_path, bench, "run", batch_size=2, limit=6)
    lines = [json.loads(line) for line in open(next((tmp_path / "run").glob("responses*.jsonl")))]
    assert len(lines) == 4  # two batches of two
    fake = _RecordingGenerator()
    monkeypatch.setattr(generation, "load_generator", lambda *a, **k: fake)
    _pope_run(tmp_path, bench, "run", batch_size=2, limit=6)
    assert sum(len(b) for b in fake.batches) == 12 - 4


def test_automatic_batch_size_grows_until_out_of_memory_and_backs_off_once(caplog):
    tried = []

    def probe(image, prompt, label, size):
        tried.append(size)
        if size > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    gen = ModelGenerator.__new__(ModelGenerator)
    gen.model, gen.max_new_tokens, gen._probe, gen.prompt_length = SimpleNamespace(device=torch.device("cuda")), 8, probe, len
    with caplog.at_level(logging.INFO, logger="lvlm_skip.evaluation.generation"):
        assert gen.fit_batch_size(["a", "b"], ["short", "a longer prompt"], "none") == 4
    assert tried == [1, 2, 4, 8]
    assert any("batch size: 4 (automatic" in r.getMessage() for r in caplog.records)
    gen.model = SimpleNamespace(device=torch.device("cpu"))
    assert gen.fit_batch_size(["a"], ["p"], "none") == 1


def test_a_batch_that_runs_out_of_memory_is_answered_as_two_halves(scene_generator, monkeypatch, caplog):
    gen, images = scene_generator
    alone = _answers(gen, images, "none", 1)
    stock = gen.model.generate

    def generate(**inputs):
        if inputs["input_ids"].shape[0] > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return stock(**inputs)

    monkeypatch.setattr(gen.model, "generate", generate)
    with caplog.at_level(logging.WARNING, logger="lvlm_skip.evaluation.generation"):
        assert _answers(gen, images, "none", 8) == alone
    assert any("ran out of GPU memory" in r.getMessage() for r in caplog.records)


def test_profile_is_the_same_at_batch_1_and_4(scene_generator):
    from lvlm_skip.profiles.measure import ProfileItem, profile

    gen, images = scene_generator
    items = [ProfileItem(image=image, prompt=question) for image, question in zip(images, QUESTIONS)]
    alone = profile(gen.model, gen.processor, items, content_words=["cup", "boat", "apple"], max_new_tokens=16)
    batched = profile(gen.model, gen.processor, items, content_words=["cup", "boat", "apple"], max_new_tokens=16,
                      batch_size=4)
    assert batched.to_dict() == alone.to_dict()
    assert alone.statistics["all"].tokens > len(items)
    with pytest.raises(Exception, match="batch_size must be a positive integer"):
        profile(gen.model, gen.processor, items, batch_size=0)


def test_a_batched_trace_row_equals_the_prompt_traced_alone(scene_generator):
    import numpy as np

    import lvlm_skip
    from lvlm_skip.inputs.models import chat_prompt, encode_inputs

    gen, images = scene_generator
    model, processor = gen.model, gen.processor
    picked = [0, 1, 3]  # a caption, a yes/no question, a longer caption: rows end at different steps

    def traced(rows, watch):
        inputs = encode_inputs(processor, [chat_prompt(processor, QUESTIONS[i]) for i in rows], [images[i] for i in rows], model)
        return lvlm_skip.trace(model, inputs, processor=processor, max_new_tokens=24, watch_tokens=watch)

    batch = traced(picked, ["yes", "no", "cup"])
    assert len(set(batch.lengths.tolist())) > 1
    for b, i in enumerate(picked):
        alone, row = traced([i], ["cup", "no"]), batch.row(b, ["cup", "no"])
        assert row.texts == alone.texts and row.tokens == alone.tokens and row.watch_tokens == ["cup", "no"]
        for name in Trace_ARRAYS:
            mine, theirs = getattr(row, name), getattr(alone, name)
            if mine is None:
                assert theirs is None
            elif mine.dtype.kind == "f":
                np.testing.assert_allclose(mine, theirs, atol=1e-5, equal_nan=True, err_msg=name)
            else:
                np.testing.assert_array_equal(mine, theirs, err_msg=name)
    with pytest.raises(ValueError, match="out of range"):
        batch.row(3)
    with pytest.raises(ValueError, match="not in this trace"):
        batch.row(0, ["boat"])


Trace_ARRAYS = ("token_ids", "lengths", "token_probs", "topk_ids", "topk_probs", "watch_probs", "jsd", "top1_changed",
                "critical", "mutation", "hidden", "hidden_final", "competitor_ids", "competitor_probs", "window_start")


def test_layer_statistics_are_the_same_at_batch_1_and_3(scene_generator):
    from recipes.layer_statistics import collect

    gen, _ = scene_generator
    alone = collect(gen.model, gen.processor, "test-breaking", 4, 2000, 16)
    assert collect(gen.model, gen.processor, "test-breaking", 4, 2000, 16, batch_size=3) == alone
    assert alone["tokens"] > 4


def test_pope_command_at_batch_3_writes_the_answers_of_batch_1(tmp_path, bench):
    from lvlm_skip.cli import main

    answers = {}
    for size in ("1", "3"):
        out = tmp_path / f"batch{size}"
        assert main(["pope", "--questions", str(bench / "pope" / "scenes_pope_random.json"), "--model", str(MODEL),
                     "--image-dir", str(bench / "images"), "--variants", "none,skip2:online,dola", "--limit", "7",
                     "--device", "cpu", "--batch-size", size, "--out", str(out), "--no-progress"]) == 0
        rows = [json.loads(line) for line in open(out / "responses.jsonl")]
        answers[size] = {(r["variant"], r["id"]): (r["response"], r["new_tokens"], r["layers_skipped"]) for r in rows}
        reports = [json.loads(path.read_text()) for path in out.glob("pope_*.json") if "details" not in path.name]
    assert answers["3"] == answers["1"] and len(answers["1"]) == 21
    assert len(reports) == 1 and "batch_size" not in json.dumps(reports[0]["meta"]["run"])


# -- rows about one image share its prefill ---------------------------------------------------------------

#: (scene, question): three images asked several questions each, as POPE asks them (and one caption)
SHARED = [(0, "Is there a cup in the image?"), (0, "Is there a boat in the image?"), (0, "Describe this image."),
          (1, "Is there an apple in the image?"), (1, "Is there a car in the image?"), (1, "Is there a clock in the image?"),
          (2, "Is there a ball in the image?"), (2, "Describe this image in detail.")]
#: the variants that decode the usual way: VCD, and the static skips, which here (no layers given) measure their
#: layers on the whole prompt; the others' prefix is the stock model's, so they share
NOT_SHARING = {"vcd", "skip1", "skip2", "skip3", "exit"}


@pytest.mark.parametrize("label", LABELS.split(","))
def test_rows_about_one_image_share_its_prefill_with_the_same_answers(scene_generator, label, monkeypatch):
    from lvlm_skip import anatomy
    from lvlm_skip.scenes import make_scene

    gen, _ = scene_generator
    scenes = {i: make_scene("test", 0, i).image for i in {s for s, _ in SHARED}}
    images, questions = [scenes[s] for s, _ in SHARED], [q for _, q in SHARED]
    alone = [gen.generate_batch([i], [q], label)[0] for i, q in zip(images, questions)]
    prefills = []
    real = anatomy.shared_prefix_cache
    monkeypatch.setattr(anatomy, "shared_prefix_cache", lambda *a, **k: prefills.append(a[1]) or real(*a, **k))
    together = gen.generate_batch(images, questions, label)
    assert [(a.text, a.new_tokens, round(a.layers_skipped, 9)) for a in together] == \
        [(a.text, a.new_tokens, round(a.layers_skipped, 9)) for a in alone]
    assert gen.shares_image_prefixes(label) == (label not in NOT_SHARING)
    if label in NOT_SHARING:
        assert prefills == []
    else:  # one prefix forward for the three images, and the eight rows
        assert len(prefills) == 1 and prefills[0].prefix_ids.shape[0] == 3 and prefills[0].groups.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]


def test_the_runner_sorts_by_image_first_when_the_generator_shares_prefixes():
    from lvlm_skip.evaluation.runner import _sort_key

    items = [EvalItem(id=str(i), image=image, prompt=prompt) for i, (image, prompt) in
             enumerate([("b.png", "a long question here"), ("a.png", "short"), ("b.png", "mid one"), ("a.png", "a longer one")])]
    task = SimpleNamespace(variant_request=lambda item, label: item)
    sharing = SimpleNamespace(prompt_length=len, shares_image_prefixes=lambda label: True)
    plain = SimpleNamespace(prompt_length=len, shares_image_prefixes=lambda label: False)
    assert [i.id for b in batches(items, 2, _sort_key(lambda: sharing, task, 2, "none")) for i in b] == ["1", "3", "2", "0"]
    assert [i.id for b in batches(items, 2, _sort_key(lambda: plain, task, 2, "none")) for i in b] == ["1", "2", "3", "0"]
