"""``lvlm-skip amber`` in-process on a tiny AMBER fixture, with a fake generator instead of a model."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from amber_fixture import write_amber
from lvlm_skip.cli import main
from lvlm_skip.evaluation.generation import Generation
from lvlm_skip.evaluation.processes import shard_items
from lvlm_skip.evaluation.records import AnswerRecord, AnswerStore, read_answers

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def amber(tmp_path: Path) -> dict[str, Path]:
    return {**write_amber(tmp_path / "amber", tmp_path / "images"), "out": tmp_path / "out"}


class FakeGen:
    """Counts calls; descriptions get a caption, questions "Yes"/"No". ``skip1`` is twice as fast."""

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
            return Generation("A puppy on the lawn with a cat.", 10, seconds, 0.0 if variant == "none" else 2.0)
        return Generation("Yes" if "3" in prompt or "7" in prompt else "No", 10, seconds, 0.0 if variant == "none" else 2.0)


def _args(amber, *extra: str) -> list[str]:
    return ["amber", "--model", "tiny", "--amber-root", str(amber["root"]), "--image-dir", str(amber["images"]),
            "--out", str(amber["out"]), "--backend", "offline", "--no-progress", *extra]


def _keys(out: Path) -> list[tuple[str, int]]:
    return [r.key for r in read_answers(out / "responses.jsonl")]


def test_end_to_end_report(amber, use_generator, capsys):
    gen = FakeGen()
    use_generator(gen)
    assert main(_args(amber, "--variants", "none,skip1", "--task", "a")) == 0
    assert len(gen.calls) == 16
    report = json.loads((amber["out"] / "amber_a.json").read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    assert rows["none"]["speedup"] == 1.0 and rows["skip1"]["speedup"] == 2.0
    assert rows["none"]["tokens_per_s"] == 10.0 and rows["skip1"]["layers_skipped"] == 2.0
    # Both captions are "A puppy on the lawn with a cat." -> nouns puppy, lawn, cat.
    # id 1 (truth dog, grass; hallu cat): dog, grass covered, cat hallucinated + mentioned.
    # id 2 (truth man; hallu car): all 3 nouns hallucinated, nothing covered or mentioned.
    # CHAIR = 4/6.001 = 66.7; Cover = 2/3.001 = 66.6; Cog = 1/2.001 = 50.0; Hal = 100.
    assert (rows["none"]["CHAIR"], rows["none"]["Cover"], rows["none"]["Cog"], rows["none"]["Hal"]) == (
        66.7, 66.6, 50.0, 100.0)
    # Questions 3 and 7 get "Yes", the others "No"; only id 5 (truth yes) is wrong: 5/6.001 = 83.3
    assert rows["none"]["Accuracy"] == 83.3 and rows["none"]["errors"] == 0 and rows["none"]["n"] == 8
    assert report["meta"]["backend"].startswith("offline") and report["meta"]["run"]["max_new_tokens"] == 512
    assert "| variant" in (amber["out"] / "amber_a.md").read_text()
    printed = capsys.readouterr().out
    assert "skip1" in printed and "speedup" in printed and "tokens_per_s" in printed
    assert sorted(_keys(amber["out"])) == sorted((v, i) for v in ("none", "skip1") for i in range(1, 9))


def test_interrupt_exits_130_with_resume_hint_and_resumes(amber, use_generator, capsys):
    args = _args(amber, "--variants", "none,skip1", "--task", "d")
    use_generator(FakeGen(fail_after=5))
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lvlm-skip: interrupted: 5 of 12 answer(s)") and "rerun the same command" in err[-1]
    assert len(read_answers(amber["out"] / "responses.jsonl")) == 5
    with (amber["out"] / "responses.jsonl").open("a") as fh:  # a crash in the middle of a line
        fh.write('{"variant": "skip1", "id": 3, "respo')
    gen = FakeGen()
    use_generator(gen)
    assert main(args) == 0
    assert len(gen.calls) == 12 - 5
    keys = _keys(amber["out"])
    assert len(keys) == len(set(keys)) == 12
    gen = FakeGen()
    use_generator(gen)
    assert main(args) == 0 and gen.calls == []  # a third run has nothing left to generate


def test_score_only(amber, use_generator, capsys):
    use_generator(FakeGen())
    main(_args(amber, "--task", "g"))
    (amber["out"] / "amber_g.json").unlink()

    def never(*_):
        raise AssertionError("score-only must not generate")

    use_generator(never)
    argv = ["amber", "--amber-root", str(amber["root"]), "--out", str(amber["out"]), "--task", "g",
            "--backend", "offline", "--score-only"]
    assert main(argv) == 0
    assert json.loads((amber["out"] / "amber_g.json").read_text())["rows"][0]["CHAIR"] == 66.7
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # a variant that was never generated
        main([*argv, "--variants", "skip2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no answers of skip2" in err[0] and "without --score-only" in err[0]


def test_unreadable_image_is_an_error_row_and_retried(amber, use_generator):
    (amber["images"] / "AMBER_1.png").write_bytes(b"not an image")
    use_generator(FakeGen())
    assert main(_args(amber, "--task", "g")) == 0
    errors = [r for r in read_answers(amber["out"] / "responses.jsonl") if not r.ok]
    assert [r.id for r in errors] == [1] and "AMBER_1.png" in errors[0].error
    row = json.loads((amber["out"] / "amber_g.json").read_text())["rows"][0]
    assert row["errors"] == 1 and row["n"] == 1
    # errored items are retried by a rerun; once the image is fixed, the error is gone
    write_amber(amber["root"].parent / "again", amber["images"])
    gen = FakeGen()
    use_generator(gen)
    assert main(_args(amber, "--task", "g")) == 0
    assert len(gen.calls) == 1
    records = read_answers(amber["out"] / "responses.jsonl")
    assert len(records) == 2 and all(r.ok for r in records)
    assert json.loads((amber["out"] / "amber_g.json").read_text())["rows"][0]["errors"] == 0


def test_generation_exception_aborts_after_saving(amber, use_generator, caplog):
    calls = []

    def flaky(image, prompt, variant):
        calls.append(prompt)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory")
        return Generation("No", 1, 0.1)

    use_generator(flaky)
    with pytest.raises(RuntimeError, match="out of memory"):
        main(_args(amber, "--task", "d"))
    assert len(read_answers(amber["out"] / "responses.jsonl")) == 2  # what was finished is saved
    assert "aborting on RuntimeError" in caplog.text
    gen = FakeGen()
    use_generator(gen)
    assert main(_args(amber, "--task", "d")) == 0 and len(gen.calls) == 6 - 2


@pytest.mark.parametrize("mutate,extra,needle", [
    (lambda a: shutil.rmtree(a["root"]), [], "not found"),
    (lambda a: (a["root"] / "annotations.json").write_text("[{"), [], "annotations.json"),
    (lambda a: (a["root"] / "annotations.json").write_text('[{"id": 1, "type": "weird"}]'), [], "unknown type"),
    (lambda a: (a["root"] / "relation.json").unlink(), [], "relation.json"),
    (lambda a: None, ["--variants", "none,skip9"], "unknown variant"),
    (lambda a: shutil.rmtree(a["images"]), [], "--image-dir"),
    (lambda a: None, ["--model", "/nonexistent/model"], "/nonexistent/model"),
    (lambda a: None, ["--max-new-tokens", "0"], "--max-new-tokens"),
    (lambda a: None, ["--limit", "-1"], "--limit"),
])
def test_bad_inputs_exit_2_with_one_line(amber, capsys, mutate, extra, needle):
    mutate(amber)
    with pytest.raises(SystemExit) as exc:
        main(_args(amber, *extra))  # no fake generator: nothing may get as far as loading a model
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lvlm-skip: error: ") and needle in err[0], err


def test_answer_store_and_sharding_helpers(tmp_path):
    assert shard_items(list(range(7)), 1, 3) == [1, 4]
    assert sorted(sum((shard_items(list(range(7)), r, 3) for r in range(3)), [])) == list(range(7))
    with AnswerStore(tmp_path) as store:
        store.append(AnswerRecord("none", 1, response="x"))
    with store.path.open("a") as fh:
        fh.write('{"variant": "none", "id": 2')  # truncated
    with AnswerStore(tmp_path) as store:
        assert store.answered() == {("none", 1)}
        store.append(AnswerRecord("none", 2, response="y"))
    assert [r.id for r in read_answers(store.path)] == [1, 2]
    with store.path.open("a") as fh:  # a record with a key this version does not know is still a record
        fh.write('{"variant": "none", "id": 3, "response": "z", "from_the_future": 1}\n')
    assert [r.id for r in read_answers(store.path)] == [1, 2, 3]


#: Launchers that start two CPU ranks under accelerate 1.16 / torch 2.13 (and the README's commands). accelerate's
#: ``--cpu`` is not among them: it starts one process unless an MPI config sends it through mpirun.
LAUNCHERS = {
    "accelerate": ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29581"],
    "torchrun": ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29582"],
}
ACCELERATE_CPU = ["-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29583"]


def _fake_eval(launcher: list[str], amber, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, *launcher, str(REPO / "tests" / "fake_eval.py"), str(out), str(amber["root"]),
           str(amber["images"]), "--log-level", "INFO"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _records(out: Path) -> list[dict]:
    return sorted((dataclasses.asdict(r) for r in read_answers(out / "responses.jsonl")), key=lambda r: (r["variant"], r["id"]))


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory) -> list[dict]:
    """The records of a single-process run of tests/fake_eval.py on the AMBER fixture."""
    root = tmp_path_factory.mktemp("unsharded")
    amber = write_amber(root / "amber", root / "images")
    _fake_eval([], amber, root / "out")
    return _records(root / "out")


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_ranks_run_and_merge_to_the_unsharded_records(amber, launcher, unsharded):
    """Two CPU processes: each rank answers its shard (half of the 16 answers) into its own file, rank 0 merges
    them into exactly the records of a single-process run and reports."""
    proc = _fake_eval(LAUNCHERS[launcher], amber, amber["out"])
    assert "rank 0: 8 answer(s) to generate" in proc.stderr and "rank 1: 8 answer(s) to generate" in proc.stderr, \
        proc.stderr[-3000:]
    assert _records(amber["out"]) == unsharded and len(unsharded) == 16
    assert not list(amber["out"].glob("responses.rank*.jsonl"))
    assert (amber["out"] / "amber_a.md").is_file()


def test_accelerate_cpu_starts_one_process_and_says_so(amber, unsharded):
    """accelerate 1.16's ``--cpu --num_processes 2`` runs one process: the run is unsharded, with a warning."""
    proc = _fake_eval(ACCELERATE_CPU, amber, amber["out"])
    assert "rank 0: 16 answer(s) to generate" in proc.stderr and "rank 1" not in proc.stderr, proc.stderr[-3000:]
    assert "accelerate launch --cpu started one process" in proc.stderr and "--multi_gpu" in proc.stderr
    assert _records(amber["out"]) == unsharded
