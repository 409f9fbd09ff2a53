"""Bad input that used to escape as a traceback or go unnoticed (issue 24): image bombs, deep JSON,
speed's options, mismatched weights, an in-place benchmark redraw, the digest cache."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from amber_fixture import write_amber
from lvlm_skip.cli import main
from lvlm_skip.errors import InputError
from lvlm_skip.evaluation.generation import Generation
from lvlm_skip.evaluation.records import read_answers
from lvlm_skip.inputs.images import PIXELS_VARIABLE, load_image
from tiny_models import make_llava


def write_pixel_bomb(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A small PNG whose header claims ``width x height`` pixels (400 M by default; only the header is valid)."""
    from PIL import Image

    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes of header data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def _one_error_line(capsys, needle: str) -> str:
    """The one ``lvlm-skip: error:`` line on stderr, last (log lines before it, as under ``-p no:logging``, pass)."""
    err = capsys.readouterr().err.strip().splitlines()
    ours = [line for line in err if line.startswith("lvlm-skip")]
    assert len(ours) == 1 and err[-1] == ours[0] and ours[0].startswith("lvlm-skip: error: ") and needle in ours[0], err
    return ours[0]


# ------------------------------------------------------------------------- 1. the pixel limit


def test_pixel_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    monkeypatch.delenv(PIXELS_VARIABLE, raising=False)
    bomb = write_pixel_bomb(tmp_path / "bomb.png")
    with pytest.raises(InputError, match=rf"20000 x 20000 = 400,000,000 pixels, over the limit of 100,000,000: set {PIXELS_VARIABLE}"):
        load_image(bomb)


def test_pixel_limit_can_be_raised_and_lowered(tmp_path, monkeypatch):
    from PIL import Image

    small = tmp_path / "small.png"
    Image.new("RGB", (10, 10)).save(small)
    monkeypatch.setenv(PIXELS_VARIABLE, "99")
    with pytest.raises(InputError, match="10 x 10 = 100 pixels, over the limit of 99"):
        load_image(small)
    monkeypatch.setenv(PIXELS_VARIABLE, "100")
    assert load_image(small).size == (10, 10)
    assert load_image(small, max_pixels=100).size == (10, 10)
    with pytest.raises(InputError, match="over the limit of 50"):
        load_image(small, max_pixels=50)
    # raised above PIL's own limit (2 x 89.5 M): PIL no longer refuses, the (truncated) data is what fails
    monkeypatch.setenv(PIXELS_VARIABLE, "500000000")
    with pytest.raises(InputError, match="cannot read image"):
        load_image(write_pixel_bomb(tmp_path / "bomb.png"))
    monkeypatch.setenv(PIXELS_VARIABLE, "lots")
    with pytest.raises(InputError, match=f"{PIXELS_VARIABLE}='lots' is not a positive number"):
        load_image(small)
    from PIL import Image as PILImage

    assert PILImage.MAX_IMAGE_PIXELS == 89478485  # restored


def test_pixel_bomb_in_an_amber_query_is_an_error_row(tmp_path, use_generator, monkeypatch):
    monkeypatch.delenv(PIXELS_VARIABLE, raising=False)
    amber = write_amber(tmp_path / "amber", tmp_path / "images")
    write_pixel_bomb(amber["images"] / "AMBER_2.png")
    calls = []

    def generate(image, prompt, label):
        calls.append(prompt)
        return Generation("No", 1, 0.01, 0.0)

    use_generator(generate)
    args = ["amber", "--model", "tiny", "--amber-root", str(amber["root"]), "--image-dir", str(amber["images"]),
            "--out", str(tmp_path / "out"), "--backend", "offline", "--no-progress", "--task", "d"]
    for _ in range(2):  # the rerun retries the error rows and finishes again
        assert main(args) == 0
    records = read_answers(tmp_path / "out" / "responses.jsonl")
    errors = {r.id: r.error for r in records if not r.ok}
    assert set(errors) == {6}  # AMBER_2.png: ids 2 and 6; only 6 is discriminative
    assert "over the limit of 100,000,000" in errors[6]
    assert (tmp_path / "out" / "amber_d.json").is_file()


@pytest.mark.parametrize("option", ["--image", "--images"])
def test_trace_refuses_a_pixel_bomb_in_one_line(tmp_path, capsys, monkeypatch, option):
    from PIL import Image

    monkeypatch.delenv(PIXELS_VARIABLE, raising=False)
    bomb = write_pixel_bomb(tmp_path / "bomb.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "fine.png")
    spec = str(bomb) if option == "--image" else f"{tmp_path / 'fine.png'},{bomb}"
    with pytest.raises(SystemExit) as exc:
        main(["trace", "--model", "tiny", option, spec, "--out", str(tmp_path / "trace"), "--no-progress"])
    assert exc.value.code == 2
    _one_error_line(capsys, "over the limit of 100,000,000")


def test_bad_pixel_limit_stops_an_evaluation_before_any_item(tmp_path, use_generator, monkeypatch, capsys):
    amber = write_amber(tmp_path / "amber", tmp_path / "images")
    use_generator(lambda image, prompt, label: Generation("No", 1, 0.01, 0.0))
    monkeypatch.setenv(PIXELS_VARIABLE, "-5")
    with pytest.raises(SystemExit) as exc:
        main(["amber", "--model", "tiny", "--amber-root", str(amber["root"]), "--image-dir", str(amber["images"]),
              "--out", str(tmp_path / "out"), "--backend", "offline", "--no-progress", "--task", "d"])
    assert exc.value.code == 2
    _one_error_line(capsys, f"{PIXELS_VARIABLE}='-5'")
    assert not (tmp_path / "out" / "responses.jsonl").exists()


# ------------------------------------------------------------------------------- 2. deep JSON

DEEP = "[" * 100_000 + "]" * 100_000


def _amber_args(amber, out, *extra):
    return ["amber", "--model", "tiny", "--amber-root", str(amber["root"]), "--image-dir", str(amber["images"]),
            "--out", str(out), "--backend", "offline", "--no-progress", *extra]


@pytest.mark.parametrize("target", ["query", "annotations", "variant-options file", "variant-options text",
                                    "profile", "pope questions"])
def test_deeply_nested_json_is_one_line(tmp_path, capsys, target):
    amber = write_amber(tmp_path / "amber", tmp_path / "images")
    out = tmp_path / "out"
    if target == "pope questions":
        questions = tmp_path / "pope" / "coco_pope_random.json"
        questions.parent.mkdir()
        questions.write_text('{"question_id": 1, "image": "AMBER_1.png", "text": "Is there a dog?", "label": "yes"}\n'
                             + DEEP + "\n")
        args = ["pope", "--model", "tiny", "--pope-root", str(questions.parent), "--image-dir", str(amber["images"]),
                "--split", "random", "--out", str(out), "--no-progress"]
    else:
        extra: list[str] = ["--task", "d"]
        if target == "query":
            (amber["root"] / "query" / "query_discriminative.json").write_text(DEEP)
        elif target == "annotations":
            (amber["root"] / "annotations.json").write_text(DEEP)
        elif target == "variant-options file":
            (tmp_path / "options.json").write_text('{"skip3": ' + DEEP + "}")
            extra += ["--variants", "skip3", "--variant-options", str(tmp_path / "options.json")]
        elif target == "variant-options text":
            extra += ["--variants", "skip3", "--variant-options", '{"skip3": {"layers": ' + DEEP + "}}"]
        else:
            (tmp_path / "profile.json").write_text(DEEP)
            extra += ["--variants", "skip2", "--profile", str(tmp_path / "profile.json")]
        args = _amber_args(amber, out, *extra)
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    _one_error_line(capsys, "nested too deeply")


def test_deeply_nested_detection_option_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["profile", "--model", "tiny", "--data", str(tmp_path), "--detection", DEEP, "--out", str(tmp_path / "p")])
    assert exc.value.code == 2
    _one_error_line(capsys, "--detection: JSON nested too deeply")


# ------------------------------------------------------------------------ 3. speed's options


@pytest.mark.parametrize("argv,needle", [
    (["--threads", "-1"], "--threads: expected an int >= 0, got -1"),
    (["--candidates", "-3"], "--candidates: expected an int >= 0, got -3"),
    (["--only", "nonsense row"], "--only: unknown configuration 'nonsense row'"),
    (["--only", "none,vcd,bogus"], "--only: unknown configuration 'bogus'"),
    (["--only", " , "], "--only ' , ' names no configuration"),
])
def test_speed_bad_options_are_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch, argv, needle):
    from lvlm_skip.inputs import models as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit) as exc:
        main(["speed", "--model", "tiny", "--out", str(tmp_path), "--no-progress", *argv])
    assert exc.value.code == 2
    _one_error_line(capsys, needle)


def test_speed_only_names_match_the_configurations():
    from lvlm_skip.speed import benchmark as speed

    plan = speed.layer_plan("tiny", 16)
    configs = speed.default_configs(plan, 16, 256)
    assert {c.name.split(" ")[0] for c in configs} == set(speed.CONFIG_PREFIXES)
    assert [c.name for c in speed.select_configs(configs, "exit,dola")] == ["stock", "exit static", "exit online", "dola"]
    with pytest.raises(InputError, match="unknown configuration 'skip1 sideways'; the configurations are 'stock'"):
        speed.select_configs(configs, "skip1 sideways")


# -------------------------------------------------------------------- 4. weights vs config


@pytest.fixture(scope="module")
def saved_llava(tmp_path_factory) -> Path:
    """A random 4-layer LLaVA and its processor saved as a local model folder."""
    model, processor = make_llava(4, limit=200_000)
    folder = tmp_path_factory.mktemp("llava") / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _with_layers(saved: Path, tmp_path: Path, layers: int) -> Path:
    import shutil

    folder = shutil.copytree(saved, tmp_path / "edited")
    config = json.loads((folder / "config.json").read_text())
    assert config["text_config"]["num_hidden_layers"] == 4
    config["text_config"]["num_hidden_layers"] = layers
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_model_that_loads_cleanly_still_loads(saved_llava):
    from lvlm_skip.inputs.models import load_model

    model, _ = load_model(saved_llava, progress=False)
    assert model.config.text_config.num_hidden_layers == 4


@pytest.mark.parametrize("layers,needle", [
    (3, "unexpected weight key(s): model.language_model.layers.3."),  # config 3 layers, weights of 4
    (5, "missing weight key(s): model.language_model.layers.4."),  # config 5 layers, weights of 4
])
def test_weights_that_do_not_match_the_config_are_refused(saved_llava, tmp_path, layers, needle):
    from lvlm_skip.inputs.models import ModelLoadError, load_model

    with pytest.raises(ModelLoadError, match="do not match its config.json") as info:
        load_model(_with_layers(saved_llava, tmp_path, layers), progress=False)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_trace_refuses_mismatched_weights_in_one_line(saved_llava, tmp_path, capsys):
    folder = _with_layers(saved_llava, tmp_path, 3)
    with pytest.raises(SystemExit) as exc:
        main(["trace", "--model", str(folder), "--image", "demo", "--out", str(tmp_path / "t"), "--no-progress"])
    assert exc.value.code == 2
    _one_error_line(capsys, "unexpected weight key(s)")


# ------------------------------------------------------------- 5. a benchmark redrawn in place


def _scenes(out: Path, n: int, seed: int, *extra: str) -> int:
    return main(["scenes", "--out", str(out), "--n-images", str(n), "--seed", str(seed), "--no-progress", *extra])


def test_scenes_refuses_a_non_empty_out(tmp_path, capsys):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        _scenes(tmp_path / "bench", 2, 1)
    assert exc.value.code == 2
    _one_error_line(capsys, "is not empty (it holds notes.txt): use --overwrite")
    assert sorted(p.name for p in (tmp_path / "bench").iterdir()) == ["notes.txt", "run.lock"]


def test_scenes_overwrite_leaves_no_stale_images(tmp_path, capsys):
    bench = tmp_path / "bench"
    assert _scenes(bench, 3, 1) == 0
    with pytest.raises(SystemExit) as exc:  # a second export into the same folder
        _scenes(bench, 2, 2)
    assert exc.value.code == 2
    _one_error_line(capsys, "is not empty")
    assert _scenes(bench, 2, 2, "--overwrite") == 0
    assert sorted(p.name for p in (bench / "images").iterdir()) == ["SCENE_1.png", "SCENE_2.png"]
    assert len(json.loads((bench / "scenes.json").read_text())) == 2


def test_scenes_takes_the_folder_lock(tmp_path, capsys):
    from lvlm_skip.evaluation.lock import FolderLock

    bench = tmp_path / "bench"
    bench.mkdir()
    with FolderLock(bench):  # another export (or anything holding the folder)
        with pytest.raises(SystemExit) as exc:
            _scenes(bench, 2, 1)
    assert exc.value.code == 2
    _one_error_line(capsys, "is in use by another run (pid")
    assert not (bench / "images").exists()


def test_an_evaluation_whose_data_is_redrawn_midrun_writes_no_report(tmp_path, use_generator, capsys):
    from lvlm_skip.scenes.export import export

    bench = tmp_path / "bench"
    assert _scenes(bench, 2, 1) == 0
    calls = []

    def generate(image, prompt, label):
        calls.append(prompt)
        if len(calls) == 2:  # another process redraws the benchmark while this run reads it
            export(bench, 2, 99, overwrite=True)
        return Generation("No", 1, 0.01, 0.0)

    use_generator(generate)
    args = ["amber", "--model", "tiny", "--amber-root", str(bench), "--image-dir", str(bench / "images"),
            "--out", str(tmp_path / "out"), "--backend", "offline", "--no-progress", "--task", "g"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and len(calls) == 2
    _one_error_line(capsys, "the data changed during this run (2 image(s) such as SCENE_1.png rewritten)")
    assert not (tmp_path / "out" / "amber_g.json").exists()
    with pytest.raises(SystemExit):  # the folder now holds answers of the old data: refused as any mix
        main(args)
    _one_error_line(capsys, "holds results made with data_changed_during_run=2 image(s) such as SCENE_1.png, not null")
    assert main([*args, "--overwrite"]) == 0 and (tmp_path / "out" / "amber_g.json").is_file()


def test_an_evaluation_whose_query_file_changes_midrun_writes_no_report(tmp_path, use_generator, capsys):
    amber = write_amber(tmp_path / "amber", tmp_path / "images")
    queries = amber["root"] / "query" / "query_discriminative.json"
    calls = []

    def generate(image, prompt, label):
        calls.append(prompt)
        if len(calls) == 3:
            info = queries.stat()
            edited = queries.read_text().replace("thing 4", "thing X")  # same size, mtime restored: the cache is fooled
            queries.write_text(edited)
            import os

            os.utime(queries, ns=(info.st_atime_ns, info.st_mtime_ns))
        return Generation("No", 1, 0.01, 0.0)

    use_generator(generate)
    with pytest.raises(SystemExit) as exc:
        main(_amber_args(amber, tmp_path / "out", "--task", "d"))
    assert exc.value.code == 2
    _one_error_line(capsys, "the data changed during this run (queries: query_discriminative.json rewritten)")
    assert not (tmp_path / "out" / "amber_d.json").exists()


# ------------------------------------------------------------- 7. weights edited in place


def _fake_model_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "llava"}')
    (root / "model.safetensors").write_bytes(b"weights-v1" * 100)
    return root


def _edit_in_place_keeping_size_and_mtime(file: Path) -> None:
    import os

    info = file.stat()
    data = file.read_bytes()
    file.write_bytes(data.replace(b"v1", b"v2"))
    os.utime(file, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert file.stat().st_size == info.st_size and file.stat().st_mtime_ns == info.st_mtime_ns


def test_verify_rehashes_weights_the_cache_would_trust(tmp_path, monkeypatch, caplog):
    from lvlm_skip.evaluation.fingerprint import model_identity

    monkeypatch.setenv("LVLM_SKIP_CACHE_DIR", str(tmp_path / "cache"))
    folder = _fake_model_folder(tmp_path / "model")
    before = model_identity(str(folder))["model_sha256"]
    _edit_in_place_keeping_size_and_mtime(folder / "model.safetensors")
    assert model_identity(str(folder))["model_sha256"] == before  # the documented trust: same path, size, mtime
    with caplog.at_level("WARNING", logger="lvlm_skip"):
        after = model_identity(str(folder), verify=True)["model_sha256"]
    assert after != before and "its cached digest was stale" in caplog.text
    assert model_identity(str(folder))["model_sha256"] == after  # the cache now holds the new digest


def test_verify_weights_refuses_answers_of_the_edited_model(tmp_path, use_generator, capsys, monkeypatch):
    monkeypatch.setenv("LVLM_SKIP_CACHE_DIR", str(tmp_path / "cache"))
    amber = write_amber(tmp_path / "amber", tmp_path / "images")
    folder = _fake_model_folder(tmp_path / "model")
    calls = []
    use_generator(lambda image, prompt, label: calls.append(prompt) or Generation("No", 1, 0.01, 0.0))
    args = _amber_args(amber, tmp_path / "out", "--task", "d")
    args[args.index("--model") + 1] = str(folder)
    assert main(args) == 0 and len(calls) == 6
    _edit_in_place_keeping_size_and_mtime(folder / "model.safetensors")
    assert main(args) == 0 and len(calls) == 6  # trusted cache: nothing to generate, the old answers are reported
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*args, "--verify-weights"])
    assert exc.value.code == 2
    line = _one_error_line(capsys, "holds results made with model_sha256=")
    assert "(model.safetensors differ)" in line


@pytest.mark.parametrize("command", ["amber", "pope", "caption", "profile"])
def test_verify_weights_is_an_option_of_every_command_that_fingerprints_a_model(command):
    from lvlm_skip.cli import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    assert any("--verify-weights" in action.option_strings for action in sub._actions)
