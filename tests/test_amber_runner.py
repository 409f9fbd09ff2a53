"""End-to-end tests of ``python -m eval.amber`` on a tiny AMBER-format fixture."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from eval.amber import main
from eval.results import ResultStore, read_jsonl, shard_items

REPO = Path(__file__).resolve().parents[1]

ANNOTATIONS = [
    {"id": 1, "type": "generative", "truth": ["dog", "grass"], "hallu": ["cat"]},
    {"id": 2, "type": "generative", "truth": ["man"], "hallu": ["car"]},
    {"id": 3, "type": "discriminative-hallucination", "truth": "yes"},
    {"id": 4, "type": "discriminative-attribute-state", "truth": "no"},
    {"id": 5, "type": "discriminative-attribute-number", "truth": "yes"},
    {"id": 6, "type": "discriminative-attribute-action", "truth": "no"},
    {"id": 7, "type": "discriminative-relation", "truth": "yes"},
    {"id": 8, "type": "relation", "truth": "no"},
]
RELATION = {"dog": ["puppy"], "grass": ["lawn"], "cat": [], "man": ["person"], "car": [], "sky": []}


def _write_amber(root: Path) -> None:
    (root / "query").mkdir(parents=True)
    (root / "annotations.json").write_text(json.dumps(ANNOTATIONS))
    (root / "relation.json").write_text(json.dumps(RELATION))
    (root / "safe_words.txt").write_text("sky\n")
    q = {a["id"]: {"id": a["id"], "image": f"AMBER_{(a['id'] - 1) % 4 + 1}.png",
                   "query": "Describe this image." if a["type"] == "generative" else f"Is there thing {a['id']}?"}
         for a in ANNOTATIONS}
    files = {"all": list(q), "generative": [1, 2], "discriminative": [3, 4, 5, 6, 7, 8],
             "discriminative-existence": [3], "discriminative-attribute": [4, 5, 6],
             "discriminative-relation": [7, 8]}
    for name, ids in files.items():
        (root / "query" / f"query_{name}.json").write_text(json.dumps([q[i] for i in ids]))


@pytest.fixture()
def amber(tmp_path: Path) -> dict[str, Path]:
    root, images = tmp_path / "amber", tmp_path / "images"
    _write_amber(root)
    images.mkdir()
    for i in range(1, 5):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(images / f"AMBER_{i}.png")
    return {"root": root, "images": images, "out": tmp_path / "out"}


class FakeGen:
    """Counts calls; generative prompts get a caption, questions get "Yes"/"No".

    Variant ``skip1`` is twice as fast (same tokens, half the seconds).
    """

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_after = fail_after

    def __call__(self, image, prompt, variant):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt
        assert image.size == (8, 8)
        self.calls.append((variant, prompt))
        seconds = 0.5 if variant == "skip1" else 1.0
        if prompt.startswith("Describe"):
            return "A puppy on the lawn with a cat.", 10, seconds
        return ("Yes" if "3" in prompt or "7" in prompt else "No"), 10, seconds


def _args(amber, *extra: str) -> list[str]:
    return ["--amber-root", str(amber["root"]), "--image-dir", str(amber["images"]),
            "--out", str(amber["out"]), "--backend", "offline", *extra]


def _keys(out: Path) -> list[tuple[str, int]]:
    return [(r["variant"], r["id"]) for r in read_jsonl(out / "responses.jsonl")]


def test_end_to_end_report(amber, capsys):
    gen = FakeGen()
    assert main(_args(amber, "--variants", "none,skip1", "--task", "a"), generate_fn=gen) == 0
    assert len(gen.calls) == 16
    report = json.loads((amber["out"] / "amber_a.json").read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    assert rows["none"]["speedup"] == 1.0 and rows["skip1"]["speedup"] == 2.0
    assert rows["none"]["tokens_per_s"] == 10.0
    # Both captions are "A puppy on the lawn with a cat." -> nouns puppy, lawn, cat.
    # id 1 (truth dog, grass; hallu cat): dog, grass covered, cat hallucinated + mentioned.
    # id 2 (truth man; hallu car): all 3 nouns hallucinated, nothing covered or mentioned.
    # CHAIR = 4/6.001 = 66.7; Cover = 2/3.001 = 66.6; Cog = 1/2.001 = 50.0; Hal = 100.
    assert (rows["none"]["CHAIR"], rows["none"]["Cover"], rows["none"]["Cog"], rows["none"]["Hal"]) == (
        66.7, 66.6, 50.0, 100.0)
    # Questions 3 and 7 get "Yes", the others "No"; only id 5 (truth yes) is wrong: 5/6.001 = 83.3
    assert rows["none"]["Accuracy"] == 83.3 and rows["none"]["errors"] == 0
    assert rows["none"]["backend"].startswith("offline")
    assert "| variant" in (amber["out"] / "amber_a.md").read_text()
    printed = capsys.readouterr().out
    assert "skip1" in printed and "speedup" in printed
    assert sorted(_keys(amber["out"])) == sorted((v, i) for v in ("none", "skip1") for i in range(1, 9))


def test_resume_after_interrupt_generates_only_remaining(amber):
    args = _args(amber, "--variants", "none,skip1", "--task", "d")
    with pytest.raises(SystemExit) as exc:
        main(args, generate_fn=FakeGen(fail_after=5))
    assert exc.value.code == 130
    assert len(read_jsonl(amber["out"] / "responses.jsonl")) == 5
    # simulate a crash in the middle of writing a line
    with (amber["out"] / "responses.jsonl").open("a") as fh:
        fh.write('{"variant": "skip1", "id": 3, "respo')
    gen = FakeGen()
    assert main(args, generate_fn=gen) == 0
    assert len(gen.calls) == 12 - 5
    keys = _keys(amber["out"])
    assert len(keys) == len(set(keys)) == 12
    # a third run has nothing left to generate
    gen = FakeGen()
    assert main(args, generate_fn=gen) == 0 and gen.calls == []


def test_score_only(amber, capsys):
    main(_args(amber, "--task", "g"), generate_fn=FakeGen())
    (amber["out"] / "amber_g.json").unlink()

    def never(*_):
        raise AssertionError("score-only must not generate")

    assert main(_args(amber, "--task", "g", "--score-only"), generate_fn=never) == 0
    assert json.loads((amber["out"] / "amber_g.json").read_text())["rows"][0]["CHAIR"] == 66.7
    # score-only without responses for the requested variant fails cleanly
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(_args(amber, "--task", "g", "--variants", "skip2", "--score-only"))
    assert exc.value.code == 2
    assert "missing" in capsys.readouterr().err


def test_corrupt_image_recorded_as_error(amber):
    (amber["images"] / "AMBER_1.png").write_bytes(b"not an image")
    gen = FakeGen()
    assert main(_args(amber, "--task", "g"), generate_fn=gen) == 0
    records = read_jsonl(amber["out"] / "responses.jsonl")
    errors = [r for r in records if "error" in r]
    assert [r["id"] for r in errors] == [1] and "AMBER_1.png" in errors[0]["error"]
    row = json.loads((amber["out"] / "amber_g.json").read_text())["rows"][0]
    assert row["errors"] == 1 and row["n"] == 2
    # errors count as done: a rerun does not retry them
    gen = FakeGen()
    main(_args(amber, "--task", "g"), generate_fn=gen)
    assert gen.calls == []


def test_generation_exception_recorded(amber):
    def boom(image, prompt, variant):
        raise RuntimeError("CUDA out of memory")

    assert main(_args(amber, "--task", "de"), generate_fn=boom) == 0
    (rec,) = read_jsonl(amber["out"] / "responses.jsonl")
    assert "out of memory" in rec["error"]


@pytest.mark.parametrize("mutate,extra,needle", [
    (lambda a: shutil.rmtree(a["root"]), [], "not found"),
    (lambda a: (a["root"] / "annotations.json").write_text("[{"), [], "annotations.json"),
    (lambda a: (a["root"] / "annotations.json").write_text('[{"id": 1, "type": "weird"}]'), [], "unknown type"),
    (lambda a: (a["root"] / "relation.json").unlink(), [], "relation.json"),
    (lambda a: None, ["--variants", "none,skip9"], "unknown variant"),
    (lambda a: shutil.rmtree(a["images"]), [], "--image-dir"),
    (lambda a: None, ["--model", "/nonexistent/model"], "--model"),
])
def test_bad_inputs_exit_2_with_one_line(amber, capsys, mutate, extra, needle):
    mutate(amber)
    with pytest.raises(SystemExit) as exc:
        main(_args(amber, *extra))  # no generate_fn: the model path is checked
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1] and "Traceback" not in "\n".join(err)


def test_result_store_and_sharding_helpers(tmp_path):
    assert shard_items(list(range(7)), 1, 3) == [1, 4]
    assert sorted(sum((shard_items(list(range(7)), r, 3) for r in range(3)), [])) == list(range(7))
    store = ResultStore(tmp_path)
    store.append({"variant": "none", "id": 1, "response": "x"})
    with store.path.open("a") as fh:
        fh.write('{"variant": "none", "id": 2')  # truncated
    store = ResultStore(tmp_path)
    assert store.done() == {("none", 1)}
    store.append({"variant": "none", "id": 2, "response": "y"})
    assert [r["id"] for r in read_jsonl(store.path)] == [1, 2]


def test_two_process_sharding_merges_without_duplicates(amber):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "29581", "-m", "eval.amber",
           *_args(amber, "--variants", "none,skip1", "--task", "a", "--fake-generator")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    keys = _keys(amber["out"])
    assert len(keys) == len(set(keys))
    assert set(keys) == {(v, i) for v in ("none", "skip1") for i in range(1, 9)}
    assert not list(amber["out"].glob("responses.rank*.jsonl"))
    assert (amber["out"] / "amber_a.md").is_file()


def test_format_prompt_uses_chat_template_or_fallback():
    from eval.generation import format_prompt

    class Plain:
        chat_template = None

    class Chat:
        chat_template = "x"

        def apply_chat_template(self, conversation, add_generation_prompt):
            assert add_generation_prompt and conversation[0]["content"][0] == {"type": "image"}
            return "TEMPLATED:" + conversation[0]["content"][1]["text"]

    assert format_prompt(Plain(), "Describe this image.") == "USER: <image>\nDescribe this image. ASSISTANT:"
    assert format_prompt(Chat(), "Is there a dog?") == "TEMPLATED:Is there a dog?"
