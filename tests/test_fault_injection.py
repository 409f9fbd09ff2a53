"""Fault injection (issue 10, item 11): ``kill -9`` at random points, damaged files, two writers.

Every run is ``tests/fake_eval.py`` in a subprocess: the real runner, answer store, lock,
fingerprint and merge, with a fast deterministic generator instead of a model. A trial kills a run
(SIGKILL, at a seeded random time or at an exact injected point, including during the merge),
reruns the same command until it finishes, and compares the final answers with those of an
uninterrupted run: the same records, each exactly once, on well-formed lines, nothing left over.

Run with ``-s`` to see the table of trials (kill point, answers on disk when killed, outcome).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from amber_fixture import write_amber

DRIVER = Path(__file__).resolve().parent / "fake_eval.py"
SEED = 1011
VARIANTS = "none,skip1"
ANSWERS = 16  # 8 items x 2 variants
DELAY = 0.03  # seconds per answer in the timed trials


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fault")
    return write_amber(root / "amber", root / "images")


def _run(data, out: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(DRIVER), str(out), str(data["root"]), str(data["images"]), "--variants", VARIANTS, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())


def _start(data, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, str(DRIVER), str(out), str(data["root"]), str(data["images"]), "--variants", VARIANTS, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _env() -> dict[str, str]:
    return {**os.environ, "LVLM_SKIP_CACHE_DIR": os.environ.get("LVLM_SKIP_CACHE_DIR", "/tmp/lvlm-skip-test-cache")}


def final_records(out: Path) -> list[str]:
    """The answers of a finished folder, strictly: one record per line, each key once, no leftovers."""
    raw = (out / "responses.jsonl").read_bytes()
    assert raw.endswith(b"\n"), "the last line lacks its newline"
    lines = raw.decode().splitlines()
    records = [json.loads(line) for line in lines]  # raises on a glued or damaged line
    keys = [(r["variant"], r["id"]) for r in records]
    assert len(keys) == len(set(keys)), "duplicated answers"
    assert not list(out.glob("responses.rank*.jsonl")) and not (out / "responses.jsonl.tmp").exists()
    assert (out / "amber_a.json").is_file()
    return sorted(json.dumps(r, sort_keys=True) for r in records)


def complete_lines(out: Path) -> int:
    """Answers on disk now (complete lines of every answers file)."""
    return sum(f.read_bytes().count(b"\n") for f in out.glob("responses*.jsonl"))


def resume(data, out: Path) -> None:
    """Rerun the same command once: it must finish."""
    done = _run(data, out)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("reference") / "out"
    done = _run(data, out)
    assert done.returncode == 0, done.stderr[-2000:]
    return final_records(out)


# ----------------------------------------------------------------------------- the trials


def _timed_trial(data, out: Path, delays: list[float]) -> dict:
    """Kill the run (and the reruns) after each of ``delays`` seconds, then resume."""
    on_disk = []
    for delay in delays:
        process = _start(data, out, "--delay", str(DELAY))
        try:
            process.wait(timeout=delay)
            on_disk.append("finished")
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            on_disk.append(complete_lines(out) if out.exists() else 0)
        process.communicate()
    resume(data, out)
    return {"kill": "timer " + ", ".join(f"{d:.2f}s" for d in delays), "on_disk": on_disk}


def _injected_trial(data, out: Path, point: str, sharded: bool) -> dict:
    """Kill the run at ``point``; with ``sharded``, the folder first holds rank 1's shard of a 2-process run."""
    if sharded:
        assert _run(data, out, "--kill-at", "append:0").returncode == -signal.SIGKILL  # claims the folder, answers nothing
        assert _run(data, out, "--rank", "1", "--world", "2").returncode == 0  # rank 1 writes its shard and stops
    killed = _run(data, out, "--kill-at", point)
    assert killed.returncode == -signal.SIGKILL, (point, killed.returncode, killed.stderr[-1500:])
    on_disk = complete_lines(out)
    resume(data, out)
    return {"kill": point + (" (after a rank-1 shard)" if sharded else ""), "on_disk": [on_disk]}


def _trials() -> list[tuple[str, tuple]]:
    rng = random.Random(SEED)
    trials: list[tuple[str, tuple]] = []
    for point in ["append:0", "append:1", "append:5", "append:11", f"append:{ANSWERS}", "torn:1", "torn:8",
                  f"torn:{ANSWERS}", "report"]:
        trials.append(("injected", (point, False)))
    for point in ["merge-tmp", "merge-replace", "append:3", "torn:4", "report"]:
        trials.append(("injected", (point, True)))
    for _ in range(7):  # one kill at a random time: startup, claim, generation, merge, report or after the end
        trials.append(("timed", ([round(rng.uniform(0.3, 1.4), 3)],)))
    for _ in range(3):  # the rerun is killed too
        trials.append(("timed", ([round(rng.uniform(0.5, 1.2), 3), round(rng.uniform(0.5, 1.2), 3)],)))
    return trials


@pytest.mark.slow
def test_kill_9_at_random_points_loses_and_duplicates_nothing(data, reference, tmp_path):
    trials = _trials()
    assert len(trials) >= 20

    def run_trial(numbered):
        number, (kind, args) = numbered
        out = tmp_path / f"trial{number:02d}"
        started = time.perf_counter()
        outcome = _timed_trial(data, out, *args) if kind == "timed" else _injected_trial(data, out, *args)
        outcome["equal"] = final_records(out) == reference
        outcome["seconds"] = round(time.perf_counter() - started, 2)
        return outcome

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(run_trial, enumerate(trials)))
    print(f"\n{len(outcomes)} trials, {ANSWERS} answers each (seed {SEED})")
    print("| # | kill point | answers on disk when killed | final == uninterrupted | seconds |")
    print("|---|---|---|---|---|")
    for number, outcome in enumerate(outcomes):
        print(f"| {number} | {outcome['kill']} | {', '.join(map(str, outcome['on_disk']))} | {outcome['equal']} | "
              f"{outcome['seconds']} |")
    assert all(o["equal"] for o in outcomes), [o for o in outcomes if not o["equal"]]
    on_disk = [n for o in outcomes for n in o["on_disk"] if n != "finished"]
    assert any(n == 0 for n in on_disk) and any(0 < n < ANSWERS for n in on_disk)  # kills landed all over the run


# --------------------------------------------------------------------- damaged last lines


def _finished(data, out: Path) -> bytes:
    assert _run(data, out).returncode == 0
    return (out / "responses.jsonl").read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "newline-less", "newline-less-then-append", "garbage",
                                    "garbage-line", "glued"])
def test_damaged_last_lines_are_repaired_without_losing_a_record(data, reference, tmp_path, damage):
    out = tmp_path / "out"
    raw = _finished(data, out)
    lines = raw.splitlines(keepends=True)
    if damage == "truncated":  # a crash in the middle of the last line: that answer is generated again
        damaged = raw[: len(raw) - len(lines[-1]) // 2]
    elif damage == "newline-less":  # the last record is complete, only its newline is missing
        damaged = raw[:-1]
    elif damage == "newline-less-then-append":  # ... and the next answer must not be glued to it
        damaged = b"".join(lines[:-1])[:-1]
    elif damage == "garbage":
        damaged = raw + b"\x00\xff{not json"
    elif damage == "garbage-line":
        damaged = raw + b"#!garbage\n"
    else:  # two records on one line, as older versions wrote after a missing newline
        damaged = b"".join(lines[:-2]) + lines[-2].rstrip(b"\n") + lines[-1]
    (out / "responses.jsonl").write_bytes(damaged)
    resume(data, out)
    assert final_records(out) == reference


# ------------------------------------------------------------------------------ two writers


def test_a_second_writer_is_refused_while_the_first_finishes(data, reference, tmp_path):
    out = tmp_path / "out"
    first = _start(data, out, "--delay", str(DELAY))
    lock = out / "run.lock"
    deadline = time.time() + 30
    while time.time() < deadline and not (lock.is_file() and str(first.pid) in lock.read_text()):
        time.sleep(0.01)
    second = _run(data, out)
    assert first.wait(timeout=60) == 0, first.communicate()[1][-1500:]
    assert second.returncode == 2
    assert f"is in use by another run (pid {first.pid} on " in second.stderr
    first.communicate()
    assert final_records(out) == reference


@pytest.mark.parametrize("attempt", range(2))
def test_two_writers_started_together_one_wins_and_nothing_is_lost(data, reference, tmp_path, attempt):
    out = tmp_path / "out"
    out.mkdir()
    runs = [_start(data, out, "--delay", str(DELAY)) for _ in range(2)]
    codes = sorted(run.wait(timeout=60) for run in runs)
    stderr = [run.communicate()[1] for run in runs]
    assert codes == [0, 2], stderr
    assert any("is in use by another run" in err for err in stderr)
    assert final_records(out) == reference
