"""Layer profiles: statistics and the c/M rule by hand, the file format, wrap(profile=), content words,
lvlm_skip.profile and `lvlm-skip profile` end to end on a tiny model, presets."""

import json

import numpy as np
import pytest

import lvlm_skip
import lvlm_skip.scenes
from lvlm_skip.errors import InputError
from lvlm_skip.profiles import LayerProfile, LayerStatistics, choose_layers

from tiny_models import make_llama, make_llava


def stats(critical, mutation_rows):
    return LayerStatistics.from_detections(np.array(critical), np.array(mutation_rows, dtype=bool))


def test_statistics_by_hand():
    # 4 tokens, L = 4: critical 2, 2, 3 and none; mutations at layer 4 (two tokens), layer 3 (one)
    s = stats([2, 2, 3, 0], [[0, 0, 0, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert s.tokens == 4
    assert s.critical_histogram == (0.25, 0.0, 0.5, 0.25, 0.0)
    # over the 3 tokens with a critical layer
    assert s.mutation_frequency == pytest.approx((0.0, 0.0, 1 / 3, 2 / 3))
    assert s.median_critical() == 2
    assert stats([0, 0], [[0, 0], [0, 0]]).median_critical() == 0


def test_rule_uses_content_words_when_there_are_enough():
    L = 8
    mutation = np.zeros((100, L), dtype=bool)
    mutation[:40, 6] = True  # layer 7 in 40% of the tokens
    mutation[:8, 5] = True  # layer 6 in 8%: under the 10% share
    all_tokens = LayerStatistics.from_detections(np.full(100, 4), mutation)
    content = LayerStatistics.from_detections(np.full(60, 5), np.zeros((60, L), dtype=bool))
    c, m, rule = choose_layers({"all": all_tokens, "content": content}, min_tokens=50)
    assert (c, m, rule["basis"]) == (5, (), "content")
    c, m, rule = choose_layers({"all": all_tokens, "content": content}, min_tokens=61)
    assert (c, m, rule["basis"]) == (4, (7,), "all")


def test_rule_keeps_at_most_max_mutations_the_most_frequent():
    L = 10
    mutation = np.zeros((10, L), dtype=bool)
    for layer, count in ((6, 9), (7, 8), (8, 7), (9, 3), (10, 0)):
        mutation[:count, layer - 1] = True
    c, m, _ = choose_layers({"all": LayerStatistics.from_detections(np.full(10, 5), mutation)}, max_mutations=2)
    assert (c, m) == (5, (6, 7))


def profile_file(path, critical=3, mutations=(6, 7), num_layers=8):
    statistics = {"all": stats([critical], [[0] * num_layers])}
    return LayerProfile(critical, tuple(mutations), num_layers, statistics, rule={"basis": "all"}).save(path)


def test_file_round_trip_and_bad_files(tmp_path):
    path = profile_file(tmp_path / "p" / "profile.json")
    loaded = LayerProfile.load(path)
    assert (loaded.critical_layer, loaded.mutation_layers, loaded.num_layers) == (3, (6, 7), 8)
    assert loaded.statistics["all"].tokens == 1
    for content, message in [(None, "does not exist"), ("{not json", "cannot read profile"),
                             ('{"critical_layer": 3}', "is not a layer profile"),
                             ('{"format": "lvlm_skip.profile/1", "critical_layer": 3}', "is malformed")]:
        bad = tmp_path / "bad.json"
        if content is None:
            bad.unlink(missing_ok=True)
        else:
            bad.write_text(content)
        with pytest.raises(InputError, match=message):
            LayerProfile.load(bad)


@pytest.fixture(scope="module")
def llama():
    return make_llama(8)


@pytest.mark.parametrize("variant,expected", [("skip3", dict(critical_layer=3)), ("skip2", dict(mutation_layers=(6, 7))),
                                              ("skip1", dict(critical_layer=3, mutation_layers=(6, 7)))])
def test_wrap_takes_the_profile_layers(llama, tmp_path, variant, expected):
    path = profile_file(tmp_path / "profile.json")
    options = {"keep_last": 2} if variant == "skip3" else {}
    with lvlm_skip.skipping(llama, variant=variant, profile=path, **options) as run:
        pass
    config = run.report.config
    assert {k: getattr(config, k) for k in expected} == expected and config.profile == str(path)


def test_explicit_options_win_and_bad_profiles_are_refused(llama, tmp_path):
    path = profile_file(tmp_path / "profile.json")
    with lvlm_skip.skipping(llama, variant="skip3", profile=path, critical_layer=2, keep_last=2) as run:
        pass
    assert run.report.config.critical_layer == 2
    with pytest.raises(InputError, match="measured on a 32-layer model; this one has 8"):
        lvlm_skip.wrap(llama, variant="skip3", profile=profile_file(tmp_path / "deep.json", num_layers=32))
    with pytest.raises(InputError, match="found no mutation layer"):
        lvlm_skip.wrap(llama, variant="skip2", profile=profile_file(tmp_path / "none.json", mutations=()))
    with pytest.raises(InputError, match="found no critical layer"):
        lvlm_skip.wrap(llama, variant="skip3", profile=profile_file(tmp_path / "flat.json", critical=0))
    with pytest.raises(TypeError, match="takes no layer profile"):
        lvlm_skip.wrap(llama, variant="dola", profile=path)
    assert not lvlm_skip.is_wrapped(llama)


def test_content_tokens_are_word_starts_of_object_words():
    from lvlm_skip.profiles.measure import content_token_mask
    from lvlm_skip.inputs.builtin_models import build_word_tokenizer

    tokenizer = build_word_tokenizer()
    ids = tokenizer("a red apple on the table .", add_special_tokens=False)["input_ids"]
    assert content_token_mask(tokenizer, ids, frozenset({"apple", "table"})).tolist() == [0, 0, 1, 0, 0, 1, 0]

    class Pieces:  # a subword tokenizer: "ap" "ple" form one word
        pieces = [" a", " ap", "ple", " on", " the", " table", "s"]

        def decode(self, ids, skip_special_tokens=True):
            return "".join(self.pieces[i] for i in ids)

    mask = content_token_mask(Pieces(), list(range(7)), frozenset({"apple", "table"}))
    assert mask.tolist() == [0, 1, 0, 0, 0, 1, 0]


def test_profile_of_a_tiny_model_from_items_and_from_the_cli(tmp_path, capfd, caplog):
    import logging

    from lvlm_skip.cli import main
    from lvlm_skip.profiles.measure import ProfileItem
    from lvlm_skip.inputs.builtin_models import demo_image

    model, processor = make_llava(6)
    items = [ProfileItem(demo_image(), "describe this image ."), ProfileItem(demo_image(64), "what color is the cup ?")]
    result = lvlm_skip.profile(model, processor, items, content_words=["cup", "red"], max_new_tokens=5)
    assert result.num_layers == 6 and result.statistics["all"].tokens > 0
    assert sum(result.statistics["all"].critical_histogram) == pytest.approx(1.0)
    assert result.provenance["model"]["class"] == "LlavaForConditionalGeneration"
    assert result.provenance["detection"]["first_layer"] == 2
    # the command: a scene benchmark folder (AMBER format) and the built-in tiny model
    capfd.readouterr()
    assert main(["scenes", "--out", str(tmp_path / "scenes"), "--n-images", "2", "--seed", "1", "--no-progress"]) == 0
    assert "Creating parquet" not in "".join(capfd.readouterr())  # datasets' per-file bars stay out of the log
    assert (tmp_path / "scenes" / "hub" / "pope" / "random.parquet").is_file()
    with caplog.at_level(logging.INFO, logger="lvlm_skip"):
        assert main(["profile", "--model", "tiny", "--data", str(tmp_path / "scenes"), "-n", "2", "--max-new-tokens", "4",
                     "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    stages = [r.getMessage() for r in caplog.records if " done: " in r.getMessage()]
    assert [line.split(" in ")[0] for line in stages] == ["load done: 1 model", "profile done: 2 prompt(s)", "write done: 4 file(s)"]
    assert all(line.endswith(" s") for line in stages)
    saved = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert saved["provenance"]["data"]["format"] == "amber" and saved["provenance"]["data"]["n"] == 2
    assert saved["provenance"]["model"]["model_sha256"] == "builtin:tiny"
    assert all((tmp_path / "out" / name).is_file() for name in ("profile.md", "profile.png", "profile.svg"))
    # the same export's POPE questions: the probed objects are the content words
    from lvlm_skip.profiles.measure import load_profile_data

    pope = load_profile_data(tmp_path / "scenes" / "pope", image_dir=tmp_path / "scenes" / "images", limit=3)
    assert pope.provenance["format"] == "pope" and len(pope.items) == 3
    assert pope.items[0].prompt.startswith("Is there a") and pope.content_words <= set(lvlm_skip.scenes.KINDS)


def test_profile_command_errors_are_one_line(tmp_path, capsys):
    from lvlm_skip.cli import main

    for args, message in [(["--data", str(tmp_path / "nowhere")], "does not exist"),
                          (["--data", str(tmp_path)], "cannot tell the format"),
                          (["--data", str(tmp_path), "--detection", "{\"rel_lo\": 1}"], "unknown detection option")]:
        with pytest.raises(SystemExit) as info:
            main(["profile", "--model", "tiny", "--out", str(tmp_path / "o"), *args])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_presets_cite_the_paper_and_give_no_mutation_layers():
    from lvlm_skip.profiles.presets import PRESETS, get_preset

    seven, thirteen = PRESETS["llava-1.5-7b"], PRESETS["llava-1.5-13b"]
    assert (seven.num_layers, seven.critical_layer, seven.keep_last) == (32, 18, 5)
    assert (thirteen.num_layers, thirteen.critical_range) == (40, (16, 19))
    assert all("mutation_layers" not in p.wrap_options() for p in PRESETS.values())
    assert any("no numbers" in source for source in seven.sources)
    with pytest.raises(InputError, match="unknown preset"):
        get_preset("llava-2")


def test_every_producer_gives_one_layer_choice():
    from lvlm_skip.config import LayerChoice
    from lvlm_skip.profiles.presets import get_preset
    from lvlm_skip.skips.calibration import PromptLayers
    from lvlm_skip.speed.benchmark import layer_plan

    preset = get_preset("llava-1.5-7b").layer_choice("llava-1.5-7b")
    assert preset == LayerChoice(18, None, 5, "preset llava-1.5-7b")
    assert preset.wrap_options("skip3") == {"critical_layer": 18, "keep_last": 5}
    assert preset.wrap_options("skip2") == {}  # the paper gives no mutation layers
    measured = PromptLayers(critical=7, mutation=(12, 10), jsd=()).layer_choice()
    assert (measured.critical, measured.mutations) == (7, (10, 12))
    assert measured.wrap_options("skip1") == {"critical_layer": 7, "mutation_layers": (10, 12)}
    assert layer_plan("bench-llava", 32).wrap_options("exit") == {"mutation_layers": (27, 30)}
    with pytest.raises(ValueError, match="keep_last"):
        LayerChoice(keep_last=0)
    with pytest.raises(TypeError, match="mutations"):
        LayerChoice(mutations=5)
