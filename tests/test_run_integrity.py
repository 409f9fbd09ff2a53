"""Run integrity (issue 10, items 1, 2, 5, 6): fingerprints, retries, argument checks, paths, output folders.

Every run here is ``lvlm-skip amber`` / ``caption`` in-process with a fake generator; the fault
injection (kills, damaged files, two writers) is in ``test_fault_injection.py``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from amber_fixture import write_amber
from lvlm_skip.cli import main
from lvlm_skip.errors import InputError
from lvlm_skip.evaluation import fingerprint as fp
from lvlm_skip.evaluation.generation import Generation
from lvlm_skip.evaluation.lock import FolderLock
from lvlm_skip.evaluation.records import read_answers
from lvlm_skip.inputs.paths import resolve_under


def answer(image, prompt, label):
    return Generation(f"{label} says no", 3, 0.3, 0.0)


@pytest.fixture()
def amber(tmp_path: Path, use_generator) -> dict:
    data = write_amber(tmp_path / "amber", tmp_path / "images")
    calls: list = []

    def generate(image, prompt, label):
        calls.append((label, prompt))
        return answer(image, prompt, label)

    loads = use_generator(generate)
    return {**data, "out": tmp_path / "out", "calls": calls, "loads": loads, "tmp": tmp_path}


def _args(amber, *extra: str, model: str = "tiny") -> list[str]:
    return ["amber", "--model", model, "--amber-root", str(amber["root"]), "--image-dir", str(amber["images"]),
            "--out", str(amber["out"]), "--backend", "offline", "--task", "d", "--max-new-tokens", "8", *extra]


def _fails(argv, capsys) -> str:
    """Run ``argv``, expect exit status 2 with one stderr line; return the message."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lvlm-skip: error: "), err
    return err[0][len("lvlm-skip: error: "):]


def _model_folder(path: Path, weights: bytes = b"weights-1") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"model_type": "llava"}')
    (path / "model.safetensors").write_bytes(weights)
    (path / "README.md").write_text("a model card: not part of the identity")
    return path


# ------------------------------------------------------------------------------ fingerprints


@pytest.mark.parametrize("change, needle", [
    (lambda a: ["--max-new-tokens", "64"], "max_new_tokens=8, not 64"),
    (lambda a: ["--dtype", "bfloat16"], "dtype=float32, not bfloat16"),
    (lambda a: ["--task", "dr"], "queries_sha256="),
    (lambda a: ["--image-dir", str(write_amber(a["tmp"] / "a2", a["tmp"] / "images2")["images"])], "image_dir="),
    (lambda a: ["--mode", "online"], "skip1 answers made with mode=static, not online"),
    (lambda a: ["--variant-options", '{"skip1": {"critical_layer": 3}}'], "skip1 answers made with options={}"),
])
def test_a_rerun_with_other_settings_is_refused_with_one_line(amber, capsys, change, needle):
    assert main(_args(amber, "--variants", "none,skip1")) == 0
    before = (amber["out"] / "responses.jsonl").read_bytes()
    message = _fails(_args(amber, "--variants", "none,skip1", *change(amber)), capsys)
    assert needle in message, message
    assert message.startswith(f"--out '{amber['out']}' holds ") and message.endswith(": use --overwrite or another --out")
    assert (amber["out"] / "responses.jsonl").read_bytes() == before  # nothing mixed, nothing lost
    assert len(amber["loads"]) == 1  # refused before any model was loaded


def test_the_model_is_identified_by_the_content_of_its_files(amber, capsys):
    model = _model_folder(amber["tmp"] / "model")
    assert main(_args(amber, model=str(model))) == 0
    # the same files in another folder are the same model; a model card is not part of it
    copy = _model_folder(amber["tmp"] / "copy")
    (copy / "README.md").write_text("another card")
    assert main(_args(amber, model=str(copy))) == 0
    assert len(amber["calls"]) == 6
    # retrained weights in the same folder are another model
    (model / "model.safetensors").write_bytes(b"weights-2")
    message = _fails(_args(amber, model=str(model)), capsys)
    assert "model_sha256=" in message and "(model.safetensors differ)" in message
    stored = json.loads((amber["out"] / "run.json").read_text())["run"]
    assert stored["model_files"]["model.safetensors"] == fp.file_sha256(copy / "model.safetensors")


def test_overwrite_discards_the_old_answers_after_saying_so(amber, caplog):
    assert main(_args(amber)) == 0
    with caplog.at_level(logging.WARNING, logger="lvlm_skip"):
        assert main(_args(amber, "--max-new-tokens", "64", "--overwrite")) == 0
    assert "--overwrite: discarding the 6 answer(s)" in caplog.text and "max_new_tokens=8, not 64" in caplog.text
    assert len(amber["calls"]) == 12
    assert json.loads((amber["out"] / "run.json").read_text())["run"]["max_new_tokens"] == 64
    assert len(read_answers(amber["out"] / "responses.jsonl")) == 6


def test_adding_a_variant_to_a_finished_run_generates_only_that_variant(amber):
    assert main(_args(amber, "--variants", "none")) == 0
    assert main(_args(amber, "--variants", "none,skip3", "--variant-options", '{"skip3": {"critical_layer": 2}}')) == 0
    assert [c[0] for c in amber["calls"]] == ["none"] * 6 + ["skip3"] * 6
    stored = json.loads((amber["out"] / "run.json").read_text())["variants"]
    assert stored["skip3"]["options"] == {"critical_layer": 2} and stored["none"]["options"] == {}
    # a run that asks for the first variant only still works, and keeps skip3's answers
    assert main(_args(amber, "--variants", "none")) == 0
    assert len(read_answers(amber["out"] / "responses.jsonl")) == 12


def test_overwrite_of_one_variant_keeps_the_others(amber):
    assert main(_args(amber, "--variants", "none,skip3", "--variant-options", '{"skip3": {"critical_layer": 2}}')) == 0
    assert main(_args(amber, "--variants", "none,skip3", "--variant-options", '{"skip3": {"critical_layer": 4}}',
                      "--overwrite")) == 0
    assert [c[0] for c in amber["calls"]] == ["none"] * 6 + ["skip3"] * 6 + ["skip3"] * 6
    assert len(read_answers(amber["out"] / "responses.jsonl")) == 12


def test_answers_without_a_fingerprint_are_refused(amber, capsys):
    amber["out"].mkdir()
    (amber["out"] / "responses.jsonl").write_text('{"variant": "none", "id": 3, "response": "Yes"}\n')
    assert "answers without a run fingerprint" in _fails(_args(amber), capsys)
    assert main(_args(amber, "--overwrite")) == 0 and len(amber["calls"]) == 6


def test_a_folder_without_answers_takes_any_fingerprint(amber):
    """A run that failed before its first answer (e.g. loading the model) leaves nothing to mix."""
    amber["out"].mkdir()
    fp.RunFingerprint(run={"task": "amber", "max_new_tokens": 999}).save(amber["out"])
    assert main(_args(amber)) == 0


def test_file_digests_are_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("LVLM_SKIP_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"a" * 1000)
    first = fp.file_sha256(weights)
    cache = json.loads((tmp_path / "cache" / "file_digests.json").read_text())
    assert cache[os.path.realpath(weights)]["sha256"] == first
    # a cached digest is trusted while size and mtime match (so a huge file is read once) ...
    cache[os.path.realpath(weights)]["sha256"] = "0" * 64
    (tmp_path / "cache" / "file_digests.json").write_text(json.dumps(cache))
    assert fp.file_sha256(weights) == "0" * 64
    # ... and recomputed when the file changes
    weights.write_bytes(b"b" * 1000)
    os.utime(weights, ns=(1, 1))
    assert fp.file_sha256(weights) not in (first, "0" * 64)


# --------------------------------------------------------------------- retries and aborts


def test_errored_items_are_retried(amber):
    """``--max-new-tokens 0`` is refused up front; an item that failed (a missing image) is retried."""
    (amber["images"] / "AMBER_3.png").rename(amber["tmp"] / "AMBER_3.png")
    assert main(_args(amber)) == 0
    errors = [r for r in read_answers(amber["out"] / "responses.jsonl") if not r.ok]
    assert [r.id for r in errors] == [3, 7] and "does not exist" in errors[0].error
    (amber["tmp"] / "AMBER_3.png").rename(amber["images"] / "AMBER_3.png")
    assert main(_args(amber)) == 0
    assert [c[1] for c in amber["calls"][4:]] == ["Is there thing 3?", "Is there thing 7?"]
    assert all(r.ok for r in read_answers(amber["out"] / "responses.jsonl"))


def test_only_broken_images_left_means_no_model_is_loaded(amber):
    (amber["images"] / "AMBER_3.png").write_bytes(b"broken")
    assert main(_args(amber)) == 0
    assert len(amber["loads"]) == 1
    assert main(_args(amber)) == 0  # the two errors are retried, fail again, and no model was needed
    assert len(amber["loads"]) == 1


# ------------------------------------------------------------------------ argument checks


@pytest.mark.parametrize("extra, needle", [
    (["--max-new-tokens", "0"], "--max-new-tokens: expected a positive int, got 0"),
    (["--variants", "none,skip1", "--variant-options", '{"skip3": {"critical_layer": 2}}'],
     "--variant-options has entries for skip3, which --variants (none, skip1) does not ask for"),
    (["--variants", "skip3", "--variant-options", '{"skip3": {"critical_layer": "18"}}'],
     "variant 'skip3': option 'critical_layer' must be an int or null, got \"18\""),
    (["--variants", "skip2", "--variant-options", '{"skip2": {"mutation_layers": [27, "28"]}}'],
     "option 'mutation_layers' must be"),
    (["--variants", "skip2", "--variant-options", '{"skip2": {"detection": {"rel_low": "low"}}}'],
     "variant 'skip2', detection: option 'rel_low' must be a number, got \"low\""),
    (["--variants", "skip2", "--variant-options", '{"skip2": {"critical": 2}}'], "unknown option(s) ['critical']"),
    (["--variants", "none", "--variant-options", '{"none": {"critical_layer": 2}}'], "takes no options"),
    (["--profile", "no-such-profile.json"], "--profile: profile 'no-such-profile.json' does not exist"),
])
def test_arguments_are_checked_before_any_work(amber, capsys, extra, needle):
    message = _fails(_args(amber, *extra), capsys)
    assert needle in message, message
    assert not amber["loads"] and not (amber["out"] / "run.json").exists()


def _write_profile(path: Path, critical: int, mutations: tuple[int, ...], num_layers: int = 16) -> Path:
    from lvlm_skip.profiles import LayerProfile

    return LayerProfile(critical, mutations, num_layers, statistics={}).save(path)


def test_profile_is_checked_and_fingerprinted(amber, capsys):
    profile = amber["tmp"] / "profile.json"
    profile.write_text("{not json")
    assert "--profile: cannot read profile" in _fails(_args(amber, "--profile", str(profile)), capsys)
    profile.write_text(json.dumps({"critical_layer": 3}))
    assert "is not a layer profile" in _fails(_args(amber, "--profile", str(profile)), capsys)
    _write_profile(profile, 3, (9,))
    assert main(_args(amber, "--variants", "none,skip1", "--profile", str(profile))) == 0
    stored = json.loads((amber["out"] / "run.json").read_text())["variants"]
    assert stored["skip1"]["profile_sha256"] == fp.file_sha256(profile) and stored["none"]["profile_sha256"] is None
    _write_profile(profile, 4, (9,))
    assert "skip1 answers made with profile_sha256=" in _fails(
        _args(amber, "--variants", "none,skip1", "--profile", str(profile)), capsys)


def test_wrap_arguments_pass_the_profile_in_one_place(tmp_path):
    from lvlm_skip.evaluation import variants

    profile = _write_profile(tmp_path / "p.json", 5, (12,))
    plan = variants.plan_variants("none,skip2:online,dola", profile=str(profile))
    assert variants.wrap_arguments(plan, "skip2:online") == {"variant": "skip2", "mode": "online", "profile": str(profile)}
    assert "profile" not in variants.wrap_arguments(plan, "none")
    assert "profile" not in variants.wrap_arguments(plan, "dola")  # the peers choose their own layers


def test_folder_held_by_another_run_is_refused_with_its_pid(amber, capsys):
    amber["out"].mkdir()
    with FolderLock(amber["out"]):
        message = _fails(_args(amber), capsys)
    assert f"is in use by another run (pid {os.getpid()} on " in message
    assert main(_args(amber)) == 0  # released


# --------------------------------------------------------------------------- image paths


def test_resolve_under_refuses_escapes_the_same_way_whether_or_not_the_target_exists(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")
    (root / "inside-link.png").symlink_to(root / "sub" / "ok.png")
    (root / "out-link.png").symlink_to(tmp_path / "secret.png")
    (root / "out-dangling.png").symlink_to(tmp_path / "missing.png")
    (root / "out-dir").symlink_to(tmp_path)
    assert resolve_under(root, "sub/ok.png") == (root / "sub" / "ok.png").resolve()
    assert resolve_under(root, "sub/../sub/ok.png") == (root / "sub" / "ok.png").resolve()
    assert resolve_under(root, "inside-link.png") == (root / "sub" / "ok.png").resolve()
    messages = {}
    for name in ["../secret.png", "../missing.png", str(tmp_path / "secret.png"), str(tmp_path / "missing.png"),
                 "out-link.png", "out-dangling.png", "out-dir/secret.png", "out-dir/missing.png", "sub/../../secret.png"]:
        with pytest.raises(InputError) as info:
            resolve_under(root, name)
        messages[name] = str(info.value).replace(repr(name), "NAME")
    assert set(messages.values()) == {"image NAME is outside --image-dir (only names inside the folder are read)"}


def test_resolve_under_refuses_fifos_and_folders_without_opening_them(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")  # opening it for reading would block
    (tmp_path / "folder.png").mkdir()
    for name in ("pipe.png", "folder.png"):
        with pytest.raises(InputError, match="is not a regular file"):
            resolve_under(tmp_path, name)
    with pytest.raises(InputError, match="does not exist in --image-dir"):
        resolve_under(tmp_path, "missing.png")


def test_escaping_and_special_image_names_become_error_rows(tmp_path, use_generator):
    annotations = [{"id": i, "type": "discriminative-hallucination", "truth": "no"} for i in range(1, 6)]
    data = write_amber(tmp_path / "amber", tmp_path / "images", annotations)
    (tmp_path / "outside.png").write_bytes(b"x")
    os.mkfifo(data["images"] / "pipe.png")
    names = {1: "AMBER_1.png", 2: "../outside.png", 3: str(tmp_path / "outside.png"), 4: "pipe.png", 5: "../../etc/passwd"}
    queries = [{"id": i, "image": names[i], "query": "Is there a cat?"} for i in names]
    (data["root"] / "query" / "query_discriminative-existence.json").write_text(json.dumps(queries))
    use_generator(answer)
    assert main(["amber", "--model", "tiny", "--amber-root", str(data["root"]), "--image-dir", str(data["images"]),
                 "--out", str(tmp_path / "out"), "--task", "de", "--backend", "offline"]) == 0
    records = {r.id: r for r in read_answers(tmp_path / "out" / "responses.jsonl")}
    assert records[1].ok
    assert all("outside --image-dir" in records[i].error for i in (2, 3, 5))
    assert "not a regular file" in records[4].error


# ------------------------------------------------------------------------ output folders


@pytest.mark.parametrize("command", ["amber", "caption", "speed", "scenes", "trace"])
@pytest.mark.parametrize("where", ["file", "proc"])
def test_unusable_out_is_one_line_before_anything_is_loaded(command, where, tmp_path, capsys, use_generator):
    loads = use_generator(answer)
    out = tmp_path / "a-file"
    out.write_text("x")
    target = str(out) if where == "file" else "/proc/lvlm-skip-test"
    argv = {
        "amber": ["amber", "--model", "tiny", "--amber-root", "nowhere", "--image-dir", str(tmp_path)],
        "caption": ["caption", "--model", "tiny", "--captions", "nowhere.json", "--image-dir", str(tmp_path)],
        "speed": ["speed", "--model", "no-such-model"],
        "scenes": ["scenes"],
        "trace": ["trace", "--model", "no-such-model", "--image", "demo"],
    }[command]
    message = _fails([*argv, "--out", target], capsys)
    assert message.startswith(f"--out {target!r} is "), message
    assert not loads
