"""POPE: the official scoring by hand, the question-file reader, and ``lvlm-skip pope`` end to end.

The end-to-end tests run the real runner, answer store, fingerprint and report on the made-up
fixture of :mod:`pope_fixture`, with a fake model; one slow test runs the built-in tiny random
LLaVA with the peers.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from lvlm_skip.cli import main
from lvlm_skip.errors import InputError
from lvlm_skip.benchmarks.pope.task import PopeTask
from lvlm_skip.data.pope import PopeFormatError, find_split_files, read_pope_questions, split_name
from lvlm_skip.benchmarks.pope.metrics import METRICS, PopeCounts, count_pope, pope_answer, score_pope
from lvlm_skip.evaluation.records import read_answers
from lvlm_skip.evaluation.variants import parse_variant_spec, plan_variants
from pope_fixture import SPLITS, FakePopeModel, pope_lines, write_pope

# ------------------------------------------------------------------------------ the official rule


@pytest.mark.parametrize("answer, reading", [
    ("Yes", "yes"),
    ("No", "no"),
    ("no", "no"),
    ("NO", "yes"),                           # case-sensitive: only "No", "no" and "not"
    ("Not at all", "yes"),                   # "Not" is not "not"
    ("There is not.", "no"),
    ("No, there is not.", "no"),             # the comma is removed: "No" is a word
    ("no.", "no"),
    ("yes,no", "yes"),                       # comma removed -> one word "yesno"
    ("There is a dog. No cat.", "yes"),      # only the text before the first "."
    (".no", "yes"),                          # ... which is empty here
    ("", "yes"),                             # an empty answer is yes
    ("No\nthere is none", "yes"),            # split on " " only: the first word is "No\nthere"
    ("I see no cat", "no"),
    ("nope", "yes"),
    ("cannot", "yes"),
    ("no!", "yes"),                          # punctuation other than "," and "." stays on the word
])
def test_pope_answer_follows_the_official_rule(answer, reading):
    assert pope_answer(answer) == reading


def test_score_pope_by_hand():
    answers = ["Yes", "No", "NO", "There is a dog. No cat.", "", "I see no cat", "no.", "Not sure"]
    # readings: yes   no    yes   yes                      yes  no              no     yes
    labels = ["yes", "no", "no", "yes", "no", "yes", "no", "yes"]
    # TP = 3 (0, 3, 7), FP = 2 (2, 4), TN = 2 (1, 6), FN = 1 (5)
    assert count_pope(answers, labels) == PopeCounts(tp=3, fp=2, tn=2, fn=1)
    scores = score_pope(answers, labels)
    assert list(scores) == list(METRICS) == ["accuracy", "precision", "recall", "f1", "yes_ratio"]
    assert scores["accuracy"] == 5 / 8
    assert scores["precision"] == 3 / 5
    assert scores["recall"] == 3 / 4
    assert scores["f1"] == 2 * 0.6 * 0.75 / (0.6 + 0.75) == pytest.approx(2 / 3)
    assert scores["yes_ratio"] == 5 / 8


def test_scores_are_unrounded_fractions():
    scores = score_pope(["yes", "yes", "yes", "no"], ["yes", "no", "no", "no"])
    assert scores == {"accuracy": 0.5, "precision": 1 / 3, "recall": 1.0, "f1": 2 * (1 / 3) * 1.0 / (1 / 3 + 1.0),
                      "yes_ratio": 0.75}


def test_zero_denominators_score_zero_where_the_official_script_raises():
    # no "yes" answer: precision 0/0 (the script raises ZeroDivisionError)
    assert score_pope(["No", "no"], ["yes", "no"]) == {"accuracy": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0,
                                                       "yes_ratio": 0.0}
    # no "yes" label: recall 0/0; TP = 0 so P + R = 0 in F1
    assert score_pope(["Yes", "No"], ["no", "no"]) == {"accuracy": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0,
                                                       "yes_ratio": 0.5}
    # all correct, no "yes" anywhere: accuracy 1, the rest 0
    assert score_pope(["No"], ["no"])["accuracy"] == 1.0


def test_score_pope_refuses_what_the_script_gets_silently_wrong():
    with pytest.raises(ValueError, match="2 answers for 3 labels"):
        score_pope(["Yes", "No"], ["yes", "no", "no"])
    with pytest.raises(ValueError, match="no answers"):
        score_pope([], [])
    with pytest.raises(ValueError, match="'Yes'"):
        score_pope(["Yes"], ["Yes"])


@pytest.mark.slow  # importing scikit-learn alone takes seconds
def test_score_pope_agrees_with_scikit_learn_on_random_answers():
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    rng = random.Random(0)
    pool = ["Yes", "No", "no", "NO", "Yes, there is a cat.", "There is no cat.", "Not really", "", "not"]
    for _ in range(12):
        n = rng.randint(1, 30)
        answers = [rng.choice(pool) for _ in range(n)]
        labels = [rng.choice(("yes", "no")) for _ in range(n)]
        truth = [label == "yes" for label in labels]
        said = [pope_answer(a) == "yes" for a in answers]
        scores = score_pope(answers, labels)
        assert scores["accuracy"] == pytest.approx(accuracy_score(truth, said))
        assert scores["precision"] == pytest.approx(precision_score(truth, said, zero_division=0))
        assert scores["recall"] == pytest.approx(recall_score(truth, said, zero_division=0))
        assert scores["f1"] == pytest.approx(f1_score(truth, said, zero_division=0))
        assert scores["yes_ratio"] == pytest.approx(sum(said) / n)


def test_eval_pope_reexports_score_pope():
    import eval.pope

    assert eval.pope.score_pope is score_pope


# ------------------------------------------------------------------------------ the reader


@pytest.fixture()
def pope(tmp_path: Path) -> dict[str, Path]:
    return {**write_pope(tmp_path / "pope", tmp_path / "images"), "out": tmp_path / "out"}


def test_reader_reads_the_three_splits(pope):
    assert find_split_files(pope["root"]) == {s: pope[s] for s in ("random", "popular", "adversarial")}
    for split in SPLITS:
        questions = read_pope_questions(pope[split])
        assert [(q.question_id, q.image, q.text, q.label) for q in questions] == [
            (d["question_id"], d["image"], d["text"], d["label"]) for d in pope_lines(split)]
        assert [q.line for q in questions] == [1, 2, 3, 4, 5, 6]
        assert split_name(pope[split]) == split
    assert split_name("my_questions.json") == "my_questions"


def _write(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


GOOD = {"question_id": 1, "image": "A.png", "text": "Is there a dog in the image?", "label": "yes"}


@pytest.mark.parametrize("second, needle", [
    ("{not json", "line 3 is not JSON"),
    ("[1, 2]", "line 3: expected a JSON object"),
    ({"question_id": 2, "image": "A.png", "text": "Is there a cat in the image?"}, "line 3: missing 'label'"),
    ({**GOOD, "question_id": 2, "label": "Yes"}, "line 3: 'label' must be \"yes\" or \"no\", got 'Yes'"),
    ({**GOOD, "question_id": 2, "label": None}, "line 3: 'label'"),
    ({**GOOD, "question_id": True}, "line 3: 'question_id' must be an int or a non-empty string"),
    ({**GOOD, "question_id": 2, "image": ""}, "line 3: 'image' must be a non-empty string"),
    ({**GOOD, "question_id": 2, "text": 5}, "line 3: 'text' must be a non-empty string"),
    (GOOD, "line 3: duplicate question_id 1 (first on line 1)"),
])
def test_reader_refuses_a_bad_line_naming_file_and_line(tmp_path, second, needle):
    path = _write(tmp_path / "coco_pope_random.json", [GOOD, "", second])  # line 2 is blank: skipped
    with pytest.raises(PopeFormatError) as info:
        read_pope_questions(path)
    message = str(info.value)
    assert message.startswith(str(path)) and needle in message and "\n" not in message


def test_reader_refuses_a_missing_or_empty_file(tmp_path):
    with pytest.raises(PopeFormatError, match="file not found"):
        read_pope_questions(tmp_path / "absent.json")
    with pytest.raises(PopeFormatError, match="no questions"):
        read_pope_questions(_write(tmp_path / "empty.json", [""]))
    assert issubclass(PopeFormatError, InputError)


def test_extra_keys_and_string_ids_are_allowed(tmp_path):
    path = _write(tmp_path / "q.json", [{**GOOD, "question_id": "q1", "category": "random"}])
    (question,) = read_pope_questions(path)
    assert question.question_id == "q1"


def test_finding_split_files(tmp_path, pope):
    write_pope(pope["root"], tmp_path / "images", dataset="gqa")
    with pytest.raises(PopeFormatError, match="several datasets .*fixture, gqa.*--file-prefix"):
        find_split_files(pope["root"])
    assert find_split_files(pope["root"], ("popular",), dataset="gqa") == {"popular": pope["root"] / "gqa_pope_popular.json"}
    pope["adversarial"].unlink()
    with pytest.raises(PopeFormatError, match="fixture_pope_adversarial.json: file not found"):
        find_split_files(pope["root"], dataset="fixture")
    with pytest.raises(PopeFormatError, match="not a folder"):
        find_split_files(tmp_path / "nowhere")
    with pytest.raises(PopeFormatError, match="no POPE question file"):
        find_split_files(tmp_path / "images")


def test_task_items_ids_and_prompts(pope):
    task = PopeTask.from_folder(pope["root"], prompt_suffix=" Please answer this question with one word.")
    items = task.items()
    assert len(items) == 18 and len({i.id for i in items}) == 18
    assert [i.id for i in items[:2]] == ["random:1", "random:2"] and items[-1].id == "adversarial:6"
    assert items[7].annotations == {"split": "popular", "question_id": 2, "label": "no"}
    assert task.request(items[0]).prompt == "Is there a dog in the image? Please answer this question with one word."
    assert items[0].prompt == "Is there a dog in the image?"
    assert task.report_name == "pope_all"
    assert set(task.data_files) == {"questions_random", "questions_popular", "questions_adversarial"}
    single = PopeTask.from_folder(pope["root"], ("adversarial",), limit=4)
    assert [i.id for i in single.items()] == [1, 2, 3, 4] and single.report_name == "pope_adversarial"
    assert [len(PopeTask.from_folder(pope["root"], limit=2).questions[s]) for s in SPLITS] == [2, 2, 2]
    with pytest.raises(InputError, match="both split 'random'"):
        PopeTask.from_files([pope["random"], pope["random"]])


# ------------------------------------------------------------------------------ the command, with a fake model


def _args(pope, *extra: str) -> list[str]:
    return ["pope", "--model", "tiny", "--pope-root", str(pope["root"]), "--image-dir", str(pope["images"]),
            "--out", str(pope["out"]), "--no-progress", *extra]


def _rows(path: Path) -> dict[str, dict]:
    return {row["variant"]: row for row in json.loads(path.read_text())["rows"]}


def test_all_three_splits_in_one_run(pope, use_generator, capsys):
    model = FakePopeModel()
    use_generator(model)
    assert main(_args(pope, "--variants", "none,dola")) == 0
    assert len(model.calls) == 2 * 18
    report = json.loads((pope["out"] / "pope_all.json").read_text())
    rows = {row["variant"]: row for row in report["rows"]}
    none, dola = rows["none"], rows["dola"]
    # none hallucinates person (popular x3), mouse and bird (adversarial): by hand
    assert (none["random_Accuracy"], none["random_Precision"], none["random_Recall"], none["random_F1"],
            none["random_yes_ratio"]) == (100.0, 100.0, 100.0, 100.0, 50.0)
    assert (none["popular_TP"], none["popular_FP"], none["popular_TN"], none["popular_FN"]) == (3, 3, 0, 0)
    assert (none["popular_Accuracy"], none["popular_Precision"], none["popular_yes_ratio"]) == (50.0, 50.0, 100.0)
    assert none["popular_F1"] == pytest.approx(200 / 3)
    assert (none["adversarial_TP"], none["adversarial_FP"], none["adversarial_TN"]) == (3, 2, 1)
    assert none["adversarial_Precision"] == pytest.approx(60.0) and none["adversarial_F1"] == pytest.approx(75.0)
    assert none["adversarial_yes_ratio"] == pytest.approx(500 / 6)
    assert none["avg_F1"] == pytest.approx((100 + 200 / 3 + 75) / 3)
    assert all(dola[f"{s}_F1"] == 100.0 and dola[f"{s}_yes_ratio"] == 50.0 for s in SPLITS)
    assert (none["n"], none["errors"], dola["speedup"]) == (18, 0, 0.5)
    assert report["meta"]["questions"] == {"random": 6, "popular": 6, "adversarial": 6}
    assert report["meta"]["run"]["prompt_suffix"] == "" and report["meta"]["run"]["splits"] == list(SPLITS)
    assert report["meta"]["variants"]["dola"]["mode"] is None
    table = (pope["out"] / "pope_all.md").read_text()
    assert "random_F1" in table and "adversarial_yes_ratio" in table and "avg_F1" in table
    assert "random_F1" in capsys.readouterr().out
    keys = {r.key for r in read_answers(pope["out"] / "responses.jsonl")}
    assert ("dola", "popular:4") in keys and len(keys) == 36
    details = json.loads((pope["out"] / "pope_all_details.json").read_text())["answers"]
    assert details["none"]["popular"][1] == {"question_id": 2, "answer": "Yes, there is.", "pope_answer": "yes",
                                             "label": "no"}


def test_one_split_keeps_question_ids_and_shows_all_five_metrics(pope, use_generator):
    use_generator(FakePopeModel())
    assert main(_args(pope, "--split", "adversarial")) == 0
    md = (pope["out"] / "pope_adversarial.md").read_text()
    for column in ("adversarial_Accuracy", "adversarial_Precision", "adversarial_Recall", "adversarial_F1",
                   "adversarial_yes_ratio"):
        assert column in md
    assert sorted(r.id for r in read_answers(pope["out"] / "responses.jsonl")) == [1, 2, 3, 4, 5, 6]


def test_interrupted_run_resumes_and_score_only_rescores(pope, use_generator, capsys):
    use_generator(FakePopeModel(interrupt_after=7))
    with pytest.raises(SystemExit) as info:
        main(_args(pope, "--variants", "none,vcd"))
    assert info.value.code == 130 and "rerun the same command" in capsys.readouterr().err
    assert len(read_answers(pope["out"] / "responses.jsonl")) == 7
    model = FakePopeModel()
    use_generator(model)
    assert main(_args(pope, "--variants", "none,vcd")) == 0
    assert len(model.calls) == 36 - 7
    rows = _rows(pope["out"] / "pope_all.json")
    assert rows["none"]["popular_F1"] == pytest.approx(200 / 3) and rows["vcd"]["avg_F1"] == 100.0
    (pope["out"] / "pope_all.json").unlink()
    assert main(["pope", "--pope-root", str(pope["root"]), "--out", str(pope["out"]), "--variants", "none,vcd",
                 "--score-only"]) == 0
    assert _rows(pope["out"] / "pope_all.json") == rows


def test_prompt_suffix_is_sent_and_fingerprinted(pope, use_generator, capsys):
    model = FakePopeModel()
    use_generator(model)
    assert main(_args(pope, "--split", "random", "--prompt-suffix", "llava", "--limit", "2")) == 0
    assert [p for _, p in model.calls] == [
        "Is there a dog in the image?\nAnswer the question using a single word or phrase.",
        "Is there a boat in the image?\nAnswer the question using a single word or phrase."]
    run = json.loads((pope["out"] / "run.json").read_text())["run"]
    assert run["prompt_suffix"] == "\nAnswer the question using a single word or phrase."
    with pytest.raises(SystemExit) as info:  # the same folder with another prompt: refused, nothing generated
        main(_args(pope, "--split", "random", "--prompt-suffix", " Answer yes or no.", "--limit", "2"))
    assert info.value.code == 2 and "prompt_suffix" in capsys.readouterr().err
    assert len(model.calls) == 2


def test_limit_is_per_split_and_questions_files_work(pope, use_generator):
    model = FakePopeModel()
    use_generator(model)
    assert main(_args(pope, "--limit", "2")) == 0
    assert sorted(r.id for r in read_answers(pope["out"] / "responses.jsonl")) == sorted(
        f"{s}:{i}" for s in SPLITS for i in (1, 2))
    out = pope["out"].parent / "out2"
    assert main(["pope", "--model", "tiny", "--questions", str(pope["popular"]), str(pope["random"]), "--image-dir",
                 str(pope["images"]), "--out", str(out), "--no-progress"]) == 0
    assert list(_rows(out / "pope_popular_random.json")["none"])[:2] == ["variant", "popular_Accuracy"]


def test_unreadable_image_is_an_error_row_and_left_out_of_the_metrics(pope, use_generator):
    (pope["images"] / "C.png").unlink()
    use_generator(FakePopeModel())
    assert main(_args(pope, "--split", "random")) == 0
    row = _rows(pope["out"] / "pope_random.json")["none"]
    assert (row["n"], row["errors"], row["random_n"], row["random_Accuracy"]) == (4, 2, 4, 100.0)


@pytest.mark.parametrize("extra, needle", [
    (["--split", "random", "--variants", "none,dola:online"], "dola has no mode"),
    (["--variants", "vcd", "--variant-options", '{"vcd": {"beta": 2}}'], "`beta` (=2)"),
    (["--variants", "deco", "--variant-options", '{"deco": {"top_k": 0}}'], "`top_k` (=0)"),
    (["--file-prefix", "coco"], "coco_pope_random.json: file not found"),
])
def test_bad_input_exits_2_with_one_line(pope, use_generator, capsys, extra, needle):
    model = FakePopeModel()
    use_generator(model)
    with pytest.raises(SystemExit) as info:
        main(_args(pope, *extra))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lvlm-skip: error: ") and needle in err[0], err
    assert not model.calls


def test_a_bad_label_exits_2_naming_file_and_line(pope, capsys):
    lines = pope_lines("popular")
    lines[3]["label"] = "No"
    pope["popular"].write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(SystemExit):
        main(_args(pope))
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "fixture_pope_popular.json: line 4: 'label'" in err


def test_questions_and_split_are_exclusive(pope, capsys):
    with pytest.raises(SystemExit):
        main(["pope", "--questions", str(pope["random"]), "--split", "popular", "--score-only"])
    assert "--split and --file-prefix" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pope", "--questions", str(pope["random"]), "--pope-root", str(pope["root"])])
    assert "not allowed with argument" in capsys.readouterr().err


def test_peer_specs():
    import lvlm_skip

    assert lvlm_skip.PEERS == ("dola", "deco", "vcd") and set(lvlm_skip.PEERS) <= set(lvlm_skip.VARIANTS)
    assert parse_variant_spec("dola").variant == "dola"
    with pytest.raises(InputError, match="'vcd:static': vcd has no mode"):
        parse_variant_spec("vcd:static")
    plan = plan_variants("none,dola,deco,vcd", "online", '{"dola": {"layers": [0, 2]}, "vcd": {"alpha": 0.5}}')
    assert plan.options == {"none": {}, "dola": {"layers": (0, 2)}, "deco": {}, "vcd": {"alpha": 0.5}}
    with pytest.raises(InputError, match="'dola'.*`layers` \\(='mid'\\)"):
        plan_variants("dola", variant_options='{"dola": {"layers": "mid"}}')


def test_fingerprinting_a_peer_imports_no_torch():
    """The runner fingerprints before it loads a model; a fake-model run (tests/fake_eval.py) stays torch-free."""
    import subprocess
    import sys

    probe = ("import sys; from lvlm_skip.evaluation.variants import VariantPlan, VariantSpec, variant_fingerprint; "
             "plan = VariantPlan(specs=(VariantSpec('vcd', 'vcd', 'online'),)); "
             "assert variant_fingerprint(plan, 'vcd', None)['mode'] is None; print('torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0 and run.stdout.strip() == "False", run.stderr


# ------------------------------------------------------------------------------ a real (tiny, random) model


@pytest.mark.slow
def test_tiny_model_with_the_peers(pope, capsys):
    """``--model tiny`` (a random 16-layer LLaVA built offline) answers with none, DoLa and VCD."""
    argv = _args(pope, "--variants", "none,dola,vcd", "--max-new-tokens", "3", "--limit", "2")
    assert main(argv) == 0
    rows = _rows(pope["out"] / "pope_all.json")
    assert list(rows) == ["none", "dola", "vcd"]
    for label, row in rows.items():
        assert (row["n"], row["errors"]) == (6, 0), label
        assert row["layers_skipped"] == 0.0 and row["tokens_per_s"] > 0
        for split in SPLITS:
            assert row[f"{split}_n"] == 2 and 0.0 <= row[f"{split}_F1"] <= 100.0
    records = read_answers(pope["out"] / "responses.jsonl")
    assert len(records) == 18 and all(0 < r.new_tokens <= 3 for r in records)
    assert "avg_F1" in capsys.readouterr().out
